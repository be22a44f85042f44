"""Creating the Smile user behind a new onboarding, as a short workflow so the call is retried
by Temporal and, with an idempotency key as its id, made at most once per request."""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.smile import SmileActivities
    from activities.smile_models import CreatedUser, CreateUserRequest
    from workflows.policies import CREATE_USER


@workflow.defn(name="CreateSmileUser")
class CreateSmileUserWorkflow:
    @workflow.run
    async def run(self, request: CreateUserRequest) -> CreatedUser:
        return await workflow.execute_activity_method(
            SmileActivities.create_user, request, **CREATE_USER
        )
