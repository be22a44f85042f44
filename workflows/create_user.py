"""Creating the Smile user behind a new onboarding, as a short workflow so the call is retried
by Temporal and, with an idempotency key as its id, made at most once per request."""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.smile_models import CreatedUser, CreateUserRequest
    from workflows.policies import CREATE_USER


@workflow.defn(name="CreateSmileUser")
class CreateSmileUserWorkflow:
    @workflow.run
    async def run(self, request: CreateUserRequest) -> CreatedUser:
        created: CreatedUser = await workflow.execute_activity(
            "smile_create_user",
            request,
            result_type=CreatedUser,
            start_to_close_timeout=CREATE_USER.start_to_close,
            retry_policy=CREATE_USER.retry,
        )
        return created
