"""The new-batch form: what its inputs hold, and how they become the API's `BatchCreate` (or errors keyed by input).

Entries come from leads ticked on the leads page (their ids ride along as hidden inputs) and/or an uploaded CSV file
(a `phone` column; first_name, last_name, email, company_name, timezone; any other column is a prompt variable of
that row). A file's rows are kept in the form once read, so changing a setting never asks for the file again.
"""

from __future__ import annotations

import csv
import io
import re
import uuid
from typing import Any

import msgspec
from litestar.datastructures import FormMultiDict, UploadFile

from voice_service.batches.schemas import MAX_ENTRIES, BatchCreate
from voice_service.console import forms
from voice_service.console.clock import tz_name

WEEKDAYS = (("mon", "Monday"), ("tue", "Tuesday"), ("wed", "Wednesday"), ("thu", "Thursday"), ("fri", "Friday"),
            ("sat", "Saturday"), ("sun", "Sunday"))
RETRY_REASONS = (("no_answer", "No answer"), ("busy", "Busy"), ("failed", "Failed to connect"),
                 ("voicemail", "Voicemail"))
ROW_FIELDS = ("phone", "first_name", "last_name", "email", "company_name", "timezone")
LABELS = {
    "name": "Name",
    "agent_id": "Agent",
    "from_number_id": "Call from",
    "timezone": "Time zone",
    "window_start": "Calling window start",
    "window_end": "Calling window end",
    "days": "Days",
    "max_concurrency": "Calls at once",
    "calls_per_second": "Calls started per second",
    "max_attempts": "Attempts per lead",
    "retry_on": "Retry when",
    "backoff_minutes": "Minutes between attempts",
    "file": "CSV file",
    "entries": "Leads",
    "_form": "",
}
_WHOLE = re.compile(r"^\d{1,6}$")
_DECIMAL = re.compile(r"^\d{1,4}(\.\d{1,3})?$")


class BatchForm(msgspec.Struct, kw_only=True):
    """The inputs as typed (strings), re-shown as they were when something is refused."""

    name: str = ""
    agent_id: str = ""
    from_number_id: str = ""
    timezone: str = "UTC"
    window_start: str = ""
    window_end: str = ""
    days: list[str] = msgspec.field(default_factory=lambda: [d for d, _ in WEEKDAYS])
    max_concurrency: str = "10"
    calls_per_second: str = ""
    max_attempts: str = "1"
    retry_on: list[str] = msgspec.field(default_factory=lambda: ["no_answer", "busy"])
    backoff_minutes: str = "15"
    lead_ids: list[str] = []
    file_rows: list[dict[str, Any]] = []  # a file's rows, as entries
    file_name: str = ""


def label(key: str) -> str:
    return LABELS.get(key, key.replace("_", " ").capitalize())


def _texts(data: FormMultiDict, name: str) -> list[str]:
    return [v for v in data.getall(name, []) if isinstance(v, str)]


def _text(data: FormMultiDict, name: str, default: str = "") -> str:
    value = data.get(name)
    return value.strip() if isinstance(value, str) else default


_rows_decoder = msgspec.json.Decoder(list[dict[str, Any]])
_rows_encoder = msgspec.json.Encoder()


def rows_json(rows: list[dict[str, Any]]) -> str:
    return _rows_encoder.encode(rows).decode()


async def form_from_request(data: FormMultiDict) -> tuple[BatchForm, dict[str, str]]:
    """The form as submitted; a new file replaces the rows kept from an earlier one. Errors: the file's."""
    errors: dict[str, str] = {}
    rows: list[dict[str, Any]] = []
    file_name = _text(data, "file_name")
    upload = data.get("file")
    if isinstance(upload, UploadFile) and upload.filename:
        body = await upload.read()
        file_name = upload.filename[:200]
        rows, problem = read_csv(body)
        if problem:
            errors["file"] = f"CSV file: {problem}"
    elif kept := _text(data, "file_rows"):
        try:
            rows = _rows_decoder.decode(kept)
        except msgspec.DecodeError:
            errors["file"] = "CSV file: the file read earlier was lost; choose it again"
    form = BatchForm(
        name=_text(data, "name"), agent_id=_text(data, "agent_id"), from_number_id=_text(data, "from_number_id"),
        timezone=_text(data, "timezone", "UTC") or "UTC", window_start=_text(data, "window_start"),
        window_end=_text(data, "window_end"), days=_texts(data, "days"),
        max_concurrency=_text(data, "max_concurrency"), calls_per_second=_text(data, "calls_per_second"),
        max_attempts=_text(data, "max_attempts"), retry_on=_texts(data, "retry_on"),
        backoff_minutes=_text(data, "backoff_minutes"), lead_ids=_texts(data, "lead")[:MAX_ENTRIES + 1],
        file_rows=rows, file_name=file_name if rows else "",
    )
    return form, errors


def read_csv(body: bytes) -> tuple[list[dict[str, Any]], str | None]:
    """A batch file's rows as entries (phone and lead fields; other columns become the row's variables)."""
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        return [], f"the file is not UTF-8 text (byte {exc.start}); save it as CSV UTF-8"
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = [h.strip() for h in next(reader, [])]
        if "phone" not in [h.lower() for h in header]:
            return [], "the header row has no phone column; it is required"
        rows: list[dict[str, Any]] = []
        for values in reader:
            if not any(v.strip() for v in values):
                continue
            if len(rows) >= MAX_ENTRIES:
                return [], f"a batch holds at most {MAX_ENTRIES:,} rows; split the file"
            entry: dict[str, Any] = {}
            variables: dict[str, str] = {}
            for name, value in zip(header, values, strict=False):
                value = value.strip()
                if not name or not value:
                    continue
                if name.lower() in ROW_FIELDS:
                    entry[name.lower()] = value[:320]
                else:
                    variables[name[:100]] = value[:2000]
            if variables:
                entry["variables"] = variables
            rows.append(entry)
    except csv.Error as exc:
        return [], f"the file cannot be read as CSV near line {reader.line_num}: {exc}"
    if not rows:
        return [], "the file has a header but no rows"
    return rows, None


def _whole(value: str, key: str, errors: dict[str, str], *, blank: int | None = None) -> int | None:
    if not value:
        return blank
    if not _WHOLE.match(value):
        errors[key] = f"{label(key)}: enter a whole number"
        return None
    return int(value)


def parse(form: BatchForm) -> tuple[dict[str, Any], dict[str, str]]:
    """Form → BatchCreate's field values, and the errors keyed by input."""
    errors: dict[str, str] = {}
    values: dict[str, Any] = {"name": form.name or None, "timezone": form.timezone}
    if not form.agent_id:
        errors["agent_id"] = "Agent: choose the agent who speaks on these calls"
    elif form.agent_id.isdigit() and len(form.agent_id) <= 18:
        values["agent_id"] = int(form.agent_id)
    else:
        errors["agent_id"] = "Agent: choose one of your agents"
    if not form.from_number_id:
        errors["from_number_id"] = "Call from: choose the number the calls come from"
    else:
        try:
            values["from_number_id"] = str(uuid.UUID(form.from_number_id))
        except ValueError:
            errors["from_number_id"] = "Call from: choose one of your numbers"
    if form.window_start or form.window_end:
        if not form.window_start:
            errors["window_start"] = "Calling window start: enter the first time calls may start, e.g. 09:00"
        if not form.window_end:
            errors["window_end"] = "Calling window end: enter the time calls stop starting, e.g. 17:30"
        if not form.days:
            errors["days"] = "Days: tick at least one day"
        values["calling_window"] = {"start": form.window_start, "end": form.window_end, "days": form.days}
    concurrency = _whole(form.max_concurrency, "max_concurrency", errors)
    values["max_concurrency"] = concurrency
    if form.calls_per_second:
        if _DECIMAL.match(form.calls_per_second):
            values["calls_per_second"] = float(form.calls_per_second)
        else:
            errors["calls_per_second"] = "Calls started per second: enter a number such as 1 or 0.5"
    attempts = _whole(form.max_attempts, "max_attempts", errors, blank=1)
    backoff = _whole(form.backoff_minutes, "backoff_minutes", errors, blank=15)
    values["retry"] = {"max_attempts": attempts or 1, "retry_on": form.retry_on,
                       "backoff_seconds": [(backoff or 0) * 60]}
    if attempts is not None and not 1 <= attempts <= 10:
        errors["max_attempts"] = "Attempts per lead: between 1 and 10"
    if backoff is not None and backoff > 7 * 24 * 60:
        errors["backoff_minutes"] = "Minutes between attempts: at most a week (10080)"
    entries: list[dict[str, Any]] = []
    for text in form.lead_ids:
        try:
            entries.append({"lead_id": str(uuid.UUID(text))})
        except ValueError:
            errors["entries"] = "Leads: a selected lead is not valid; select the leads again"
    entries += form.file_rows
    if not entries and "file" not in errors:
        errors["file"] = ("CSV file: choose a file of phone numbers, or select leads on the Leads page and "
                          "choose “Create a batch from the selected leads”")
    elif len(entries) > MAX_ENTRIES:
        errors["entries"] = f"Leads: a batch holds at most {MAX_ENTRIES:,} calls; select fewer leads or split the file"
    values["entries"] = entries

    def key(field: str, path: str) -> str:
        if field == "calling_window":
            return {"start": "window_start", "end": "window_end", "days": "days"}.get(path.split(".")[0],
                                                                                      "window_start")
        if field == "retry":
            return {"max_attempts": "max_attempts", "retry_on": "retry_on"}.get(path.split(".")[0],
                                                                                 "backoff_minutes")
        if field == "entries":
            return "file" if form.file_rows else "entries"
        return field

    checked = {k: v for k, v in values.items() if k not in errors and v is not None}
    for k, message in forms.check(BatchCreate, checked, key=key, label=label).items():
        errors.setdefault(k, message)
    return values, errors


def form_from_values(values: dict[str, Any]) -> BatchForm:
    """A launch's values back in the form (the review page's "change" keeps the entries)."""
    window = values.get("calling_window") or {}
    retry = values.get("retry") or {}
    entries = values.get("entries") or []
    return BatchForm(
        name=values.get("name") or "", agent_id=str(values.get("agent_id", "")),
        from_number_id=str(values.get("from_number_id") or ""), timezone=values.get("timezone") or "UTC",
        window_start=window.get("start", ""), window_end=window.get("end", ""),
        days=window.get("days", [d for d, _ in WEEKDAYS]),
        max_concurrency="" if values.get("max_concurrency") is None else str(values["max_concurrency"]),
        calls_per_second="" if values.get("calls_per_second") is None else str(values["calls_per_second"]),
        max_attempts=str(retry.get("max_attempts", 1)), retry_on=retry.get("retry_on", []),
        backoff_minutes=str((retry.get("backoff_seconds") or [900])[0] // 60),
        lead_ids=[str(e["lead_id"]) for e in entries if e.get("lead_id")],
        file_rows=[{k: v for k, v in e.items() if v not in (None, {})} for e in entries if not e.get("lead_id")],
    )


def default_form(lead_ids: list[str], zone: Any) -> BatchForm:
    return BatchForm(lead_ids=lead_ids, timezone=tz_name(zone))
