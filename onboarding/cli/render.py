"""Readable text for the CLI: one onboarding, a page of them, the funnel, the service's
health, dead letters, notices."""

from __future__ import annotations

from datetime import UTC, datetime

from onboarding.core.defaults import DefaultsState
from onboarding.core.durations import format_duration
from onboarding.core.models import OnboardingView, Stage, Status, Timeouts
from onboarding.service.bulk import BulkStatus
from onboarding.service.dead_letters import DeadLetterDetail, DeadLetterPage
from onboarding.service.health import ServiceHealth
from onboarding.service.listing import OnboardingPage
from onboarding.service.notices import NoticeList
from onboarding.service.onboardings import Funnel, Stats


def _when(value: datetime | None, now: datetime) -> str:
    if value is None:
        return "—"
    delta = (value - now).total_seconds()
    rel = f"in {format_duration(delta)}" if delta > 0 else f"{format_duration(-delta)} ago"
    return f"{value.isoformat(timespec='seconds')} ({rel})"


def render_view(view: OnboardingView, now: datetime | None = None) -> str:
    now = now or datetime.now(UTC)
    lines = [
        f"User       {view.user_id}",
        f"Workflow   {view.workflow_id}",
        f"Stage      {view.stage.value}  (since {_when(view.stage_entered_at, now)})",
        f"Status     {view.status.value}"
        + (f"  — {view.status_reason}" if view.status_reason else ""),
        f"Started    {_when(view.started_at, now)}",
    ]
    if view.ended_at:
        lines.append(f"Ended      {_when(view.ended_at, now)}")
    deadlines = view.deadlines
    for label, value in (
        ("stall", deadlines.stall),
        ("expire", deadlines.expire),
        ("settle", deadlines.settle),
    ):
        if value is not None:
            lines.append(f"Deadline   {label:<7}{_when(value, now)}")
    lines.append("Accounts   —" if not view.accounts else "Accounts")
    for account in view.accounts:
        error = f" {account.error_code}" if account.error_code else ""
        providers = ",".join(account.providers) or "?"
        lines.append(
            f"  {account.account_id}  {account.status.value}{error}  "
            f"[{providers}] via {account.reported_by.value}"
        )
    if view.archives:
        lines.append("Archives")
        for archive in view.archives:
            lines.append(
                f"  {archive.archive_id}  {archive.status} via {archive.reported_by.value}"
            )
    required = set(view.required_data)
    data = ", ".join(
        f"{dtype}x{received.events}" + ("*" if dtype in required else "")
        for dtype, received in sorted(view.data.items())
    )
    lines.append(
        f"Data       {data or '—'}   (required: {', '.join(view.required_data) or 'none'})"
    )
    lines.append(
        f"Widget     {view.widget.state}"
        + (f" ({view.widget.close_reason})" if view.widget.close_reason else "")
    )
    if view.notices is not None:
        n = view.notices
        lines.append(
            f"Notices    {n.issued} issued: {n.delivered} delivered, {n.pending} pending, "
            f"{n.failed} failed"
        )
    lines.append(
        f"Events     {view.events_total} recorded, {view.duplicates_ignored} duplicates ignored"
        + (f", unknown types: {', '.join(view.unknown_types)}" if view.unknown_types else "")
    )
    for record in view.events:
        known = "" if record.known else "  (unknown type)"
        lines.append(
            f"  {record.created_at.isoformat(timespec='seconds')}  {record.type:<22} "
            f"{record.id}  {record.source.value}  received "
            f"{record.received_at.isoformat(timespec='seconds')}{known}"
        )
    return "\n".join(lines)


def render_timeouts(timeouts: Timeouts) -> str:
    lines = [
        f"stall {stage.value:<16}{format_duration(seconds)}"
        for stage, seconds in timeouts.stall.items()
    ]
    lines.append(f"expireAfter           {format_duration(timeouts.expire_after)}")
    lines.append(f"settleWindow          {format_duration(timeouts.settle_window)}")
    return "\n".join(lines)


def render_page(page: OnboardingPage) -> str:
    if not page.items:
        return "no onboardings match"
    lines = [f"{'USER':<44} {'STAGE':<16} {'STATUS':<10} {'IN STAGE':>9}  STARTED"]
    for item in page.items:
        started = item.started_at.isoformat(timespec="seconds") if item.started_at else "—"
        in_stage = "—" if item.time_in_stage is None else format_duration(item.time_in_stage)
        lines.append(
            f"{item.user_id:<44} {(item.stage or '?'):<16} {(item.status or '?'):<10} "
            f"{in_stage:>9}  {started}"
        )
    if page.next_page_token:
        lines.append(f"more: --page-token {page.next_page_token}")
    return "\n".join(lines)


def render_funnel(funnel: Funnel) -> str:
    lines = [f"total {funnel.total}", "", "stage"]
    lines += [f"  {stage.value:<16}{funnel.by_stage.get(stage, 0)}" for stage in Stage]
    lines += ["", "status"]
    lines += [f"  {status.value:<16}{funnel.by_status.get(status, 0)}" for status in Status]
    return "\n".join(lines)


def render_stats(stats: Stats) -> str:
    """The funnel, then per stage: open, stalled, and who has been in it longest."""
    lines = [render_funnel(stats), "", f"{'open, by stage':<18}{'OPEN':>6} {'STALLED':>8}  LONGEST"]
    for stage in Stage:
        row = stats.stages.get(stage)
        if row is None:
            continue
        oldest = row.oldest
        longest = "—"
        if oldest is not None and oldest.time_in_stage is not None:
            longest = f"{format_duration(oldest.time_in_stage)} ({oldest.user_id})"
        lines.append(f"  {stage.value:<16}{row.open:>6} {row.stalled:>8}  {longest}")
    return "\n".join(lines)


def render_health(health: ServiceHealth) -> str:
    spool = health.spool
    lines = [
        f"Service    {health.status}  — {health.detail}",
        f"Temporal   {health.temporal}",
    ]
    if not spool.writable:
        lines.append(f"Spool      not writable: {spool.error}")
    else:
        age = "—" if spool.oldest_age_seconds is None else format_duration(spool.oldest_age_seconds)
        full = "  FULL" if spool.full else ""
        lines.append(
            f"Spool      {spool.depth} waiting, {spool.bytes} of {spool.max_bytes} bytes, "
            f"oldest {age}{full}"
        )
        lines.append(f"Dead       {spool.dead_letters} dead letter(s)")
    return "\n".join(lines)


def render_dead_letters(page: DeadLetterPage) -> str:
    if not page.items:
        return "no dead letters"
    rows = [f"{'ID':<32}  {'RECEIVED':<25}  {'TYPE':<24}  REASON"]
    for item in page.items:
        received = item.received_at.isoformat(timespec="seconds")
        rows.append(f"{item.id:<32}  {received:<25}  {(item.type or '—'):<24}  {item.reason}")
    if page.next_page_token:
        rows.append(f"more: --page-token {page.next_page_token}")
    return "\n".join(rows)


def render_dead_letter(letter: DeadLetterDetail) -> str:
    return "\n".join(
        [
            f"ID         {letter.id}",
            f"Received   {letter.received_at.isoformat(timespec='seconds')}",
            f"Event      {letter.event_id or '—'}  ({letter.type or 'no type'})",
            f"Reason     {letter.reason}",
            f"Replays    {letter.replays}"
            + (f"  — last: {letter.last_error}" if letter.last_error else ""),
            f"Body       {letter.body}",
        ]
    )


def render_notices(listing: NoticeList) -> str:
    if not listing.enabled:
        return (
            f"{listing.user_id}: notices are off for this onboarding (ONBOARDING_NOTIFY_URL "
            "was not set when it started)"
        )
    if not listing.notices:
        return f"{listing.user_id}: no notices yet"
    lines = [f"{'seq':<5}{'type':<27}{'state':<11}{'attempts':<10}{'last':<6}when"]
    for notice in listing.notices:
        if notice.next_attempt_at is not None:
            when = f"next {_stamp(notice.next_attempt_at)}"
        elif notice.settled_at is not None:
            when = _stamp(notice.settled_at)
        else:
            when = "—"
        last = str(notice.last_status) if notice.last_status is not None else "—"
        lines.append(
            f"{notice.sequence:<5}{notice.type.value:<27}{notice.state.value:<11}"
            f"{notice.attempts:<10}{last:<6}{when}"
        )
        if notice.last_error and notice.state.value != "delivered":
            lines.append(f"     {notice.last_error}")
    c = listing.counts
    lines.append(
        f"{c.issued} issued: {c.delivered} delivered, {c.pending} pending, {c.failed} failed"
    )
    return "\n".join(lines)


def _stamp(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def render_defaults(state: DefaultsState) -> str:
    """The defaults new onboardings start with, then their audit, newest last."""
    current = state.current
    changed = (
        f"revision {current.revision}, changed {current.changed_at.isoformat(timespec='seconds')}"
        f" by {current.changed_by}"
        if current.changed_at is not None
        else "revision 0: the environment's values, never changed"
    )
    lines = [f"Defaults for new onboardings ({changed})", render_timeouts(current.timeouts)]
    if state.audit:
        lines.append("")
        lines.append("Audit (oldest first)")
    for entry in state.audit:
        old, new = entry.old, entry.new
        diffs = [
            f"{stage.value} {format_duration(old.stall.get(stage, 0))}→{format_duration(seconds)}"
            for stage, seconds in new.stall.items()
            if old.stall.get(stage) != seconds
        ]
        limits = [
            ("expireAfter", old.expire_after, new.expire_after),
            ("settleWindow", old.settle_window, new.settle_window),
        ]
        for label, was, now in limits:
            if was != now:
                diffs.append(f"{label} {format_duration(was)}→{format_duration(now)}")
        lines.append(
            f"#{entry.revision:<4} {entry.at.isoformat(timespec='seconds')}  {entry.actor}: "
            + (", ".join(diffs) or "no change")
        )
    return "\n".join(lines)


def render_bulk_line(status: BulkStatus) -> str:
    p = status.progress
    return (
        f"{status.id}: {p.state.value}; {p.done} done, {p.skipped_ended} skipped (ended), "
        f"{p.failed} failed, {status.remaining} remaining of {p.matched}"
    )


def render_bulk(status: BulkStatus) -> str:
    request = status.request
    lines = [render_bulk_line(status), f"  {request.kind.value} at {request.rate:g}/s"]
    for failure in status.progress.failures:
        lines.append(f"  failed {failure.user_id}: {failure.error}")
    if status.progress.state.value == "running":
        lines.append(f"  follow: onboarding bulk {status.id} --wait; stop: --stop")
    return "\n".join(lines)
