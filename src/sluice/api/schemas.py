"""Request and response documents of the control-plane API (the OpenAPI source of truth).

Requests forbid unknown fields (a typo is a 422 naming it). Types are checked here; business
rules (lengths, code that loads, settings against a schema) in the catalog service.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, create_model, model_validator


def _has_nul(value: object) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(v) for v in value)
    return False


class Request(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _no_nul_characters(cls, data: Any) -> Any:
        # PostgreSQL cannot store them; refuse them on every backend alike.
        if _has_nul(data):
            raise ValueError("text must not contain NUL (\\u0000) characters")
        return data


class Document(BaseModel):
    model_config = ConfigDict(extra="allow")


# --- errors -------------------------------------------------------------------------------------


class ErrorItem(BaseModel):
    type: str
    message: str
    field: str | None = None
    line: int | None = Field(None, description="For code: the line of the problem")


class ErrorEnvelope(BaseModel):
    errors: list[ErrorItem]


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorEnvelope, "description": text}
    for code, text in (
        (401, "missing or unknown token"),
        (403, "the token's role does not allow this"),
        (404, "not found"),
        (409, "conflict"),
        (422, "invalid input; `field` names it"),
        (429, "too many requests; see Retry-After"),
    )
}

# --- functions ----------------------------------------------------------------------------------

SettingType = Literal["STRING", "BOOLEAN", "ARRAY", "TEXT_MAP"]


class SettingDefinition(Request):
    name: str | None = Field(None, description="Defaults to camelCase of the label")
    label: str
    description: str = ""
    type: SettingType = "STRING"
    required: bool = False
    sensitive: bool = False


class FunctionCreate(Request):
    displayName: str = Field(description="At most 120 characters")
    description: str = ""
    logoUrl: str | None = None
    code: str
    language: Literal["python", "javascript"] = "python"
    resourceType: Literal["INSERT_DESTINATION", "DESTINATION"] = "INSERT_DESTINATION"
    settings: list[SettingDefinition] = []
    batchMaxCount: int = Field(20, description="1 to 400")


class FunctionUpdate(Request):
    displayName: str | None = None
    description: str | None = None
    logoUrl: str | None = None
    code: str | None = None
    language: Literal["python", "javascript"] | None = None
    resourceType: Literal["INSERT_DESTINATION", "DESTINATION"] | None = None
    settings: list[SettingDefinition] | None = None
    batchMaxCount: int | None = None


class SettingOut(Document):
    name: str
    label: str
    description: str
    type: SettingType
    required: bool
    sensitive: bool


class FunctionOut(Document):
    id: str
    displayName: str
    description: str
    logoUrl: str | None
    code: str
    language: str
    resourceType: str
    settings: list[SettingOut]
    batchMaxCount: int
    createdAt: str
    createdBy: str
    updatedAt: str
    deployedAt: str | None
    isLatestVersion: bool
    version: int
    versionId: str
    instancesCount: int


class VersionOut(Document):
    id: str
    functionId: str
    version: int
    code: str
    settings: list[SettingOut]
    language: str
    batchMaxCount: int
    author: str
    createdAt: str
    restoredFrom: str | None
    labels: list[Literal["LATEST", "DEPLOYED"]]
    isLatestVersion: bool
    instancesCount: int


class RestoreRequest(Request):
    versionId: str


class DeployRequest(Request):
    instanceIds: list[str] | None = Field(None, description="Omitted: every instance of the function")


class PreviewRequest(Request):
    code: str | None = None
    functionId: str | None = None
    language: Literal["python", "javascript"] = "python"
    payload: dict[str, Any] | list[Any]
    settings: dict[str, Any] = {}
    settingsSchema: list[SettingDefinition] | None = Field(
        None, description="Settings definitions for code not yet saved (secrets are then redacted)"
    )


class PreviewError(BaseModel):
    type: str
    message: str


class PreviewSingle(BaseModel):
    """One event: the same object as ``sluice fn test --json``."""

    status: str
    event: Any
    error: PreviewError | None
    logs: list[str]
    requests: list[dict[str, Any]]
    durationMs: float


class PreviewSlot(BaseModel):
    status: str
    event: Any
    error: PreviewError | None


class PreviewBatch(BaseModel):
    """A batch: ``status``/``error`` of the batch invocation, then one result per input."""

    status: str
    error: PreviewError | None
    results: list[PreviewSlot]
    logs: list[str]
    requests: list[dict[str, Any]]
    durationMs: float


PreviewResult = PreviewBatch | PreviewSingle


# --- connections ----------------------------------------------------------------------------------


class SourceCreate(Request):
    name: str
    enabled: bool = True


class SourceUpdate(Request):
    name: str | None = None
    enabled: bool | None = None


class SourceOut(Document):
    id: str
    name: str
    enabled: bool
    writeKeys: list[str]
    createdAt: str
    updatedAt: str


class IngestCountsOut(Document):
    sourceId: str
    since: str
    accepted: int
    failed: dict[str, int]
    duplicates: int


class DestinationCreate(Request):
    name: str
    type: str = "webhook"
    config: dict[str, Any] = {}
    sourceIds: list[str] = []
    enabled: bool = True


class DestinationUpdate(Request):
    name: str | None = None
    config: dict[str, Any] | None = None
    sourceIds: list[str] | None = None
    enabled: bool | None = None


class DestinationOut(Document):
    id: str
    name: str
    type: str
    config: dict[str, Any]
    sourceIds: list[str]
    enabled: bool
    createdAt: str
    updatedAt: str


class InstanceCreate(Request):
    functionId: str
    integrationId: str = Field(description="The destination's id")
    name: str | None = None
    enabled: bool = False
    settings: dict[str, Any] = {}


class InstanceUpdate(Request):
    name: str | None = None
    enabled: bool | None = None
    settings: dict[str, Any] | None = None


class InstanceOut(Document):
    id: str
    functionId: str
    classId: str
    integrationId: str
    name: str
    enabled: bool
    settings: dict[str, Any]
    versionId: str
    version: int
    isLatestVersion: bool
    deployedAt: str
    createdAt: str
    updatedAt: str


# --- tokens and audit ------------------------------------------------------------------------------

RoleName = Literal["WORKSPACE_OWNER", "FUNCTIONS_ADMIN", "FUNCTIONS_READ_ONLY", "SOURCE_ADMIN"]


class TokenCreate(Request):
    name: str
    role: RoleName | None = None
    roles: list[RoleName] | None = Field(None, description="Several roles, e.g. Functions Admin + Source Admin")
    functionIds: list[str] | None = Field(None, description="Function roles limited to these functions")


class MeOut(Document):
    name: str
    roles: list[str]
    functionIds: list[str] | None
    tokenId: str | None


class TokenOut(Document):
    id: str
    name: str
    role: str | None
    roles: list[str]
    functionIds: list[str] | None
    createdAt: str
    lastUsedAt: str | None
    token: str | None = Field(None, description="The secret: returned once, at creation")


class AuditEventOut(Document):
    id: int
    timestamp: str
    actor: str
    action: str
    resourceType: str
    resourceId: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None


class DeployOut(Document):
    function: FunctionOut
    deployedInstanceIds: list[str]
    versionId: str


def envelope(name: str, key: str, model: Any) -> type[BaseModel]:
    """``{"data": {key: model}}`` — Segment's Public API envelope."""
    inner = create_model(f"{name}Data", **{key: (model, ...)})  # type: ignore[call-overload]
    outer: type[BaseModel] = create_model(f"{name}Envelope", data=(inner, ...))
    return outer


# --- delivery outcomes, tail, dead letters and replay ----------------------------------------------


class OutcomeCountOut(Document):
    outcome: str
    reasonCode: str
    count: int


class LatencyOut(Document):
    p50Ms: float | None = Field(description="Upper bound of the bucket holding the median (≤ 25 % above it)")
    p95Ms: float | None


class SeriesPointOut(Document):
    at: str
    delivered: int
    notDelivered: int
    p95Ms: float | None


class DeliverySampleOut(Document):
    id: int
    destinationId: str
    at: str
    outcome: str
    reasonCode: str
    reason: str
    sourceId: str
    messageId: str | None
    attempts: int
    event: Any = Field(description="The input event (you sent)")
    error: dict[str, Any] | None
    logs: list[Any]
    requests: list[Any] = Field(description="The function's traced fetch requests, secrets redacted")
    request: dict[str, Any] | None = Field(description="The request to the destination, secrets redacted")
    response: dict[str, Any] | None


class DeliveryOut(Document):
    destinationId: str
    window: str
    from_: str = Field(alias="from")
    to: str
    delivered: int
    notDelivered: int
    filtered: int
    retrying: int
    outcomes: list[OutcomeCountOut]
    latency: LatencyOut
    series: list[SeriesPointOut]
    samples: list[DeliverySampleOut]


class OutcomeLineOut(Document):
    seq: int
    at: str
    outcome: str
    reason: str
    sourceId: str
    messageId: str | None
    type: str | None
    eventName: str | None
    attempts: int


class OutcomeLinesData(BaseModel):
    lines: list[OutcomeLineOut]
    next: int = Field(description="Pass as `after` to poll for newer lines")


class OutcomeLinesEnvelope(BaseModel):
    data: OutcomeLinesData


class DeadLetterOut(Document):
    entryId: str
    sourceId: str
    status: str
    reason: str
    failedAt: str
    attempts: int
    firstAttemptAt: str | None
    appendedAt: str
    event: Any = Field(description="The event as JSON (a string when it is not JSON)")


_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}")


def _iso_only(value: Any) -> Any:
    # pydantic would read a number (or a numeric string, in a query) as epoch seconds
    if isinstance(value, int | float) or (isinstance(value, str) and not _ISO_DATE.match(value)):
        raise ValueError("an ISO 8601 date-time is expected, e.g. 2026-11-26T10:00:00Z")
    return value


#: A date-time given as an ISO 8601 string (a number is refused, not read as epoch seconds).
IsoDatetime = Annotated[datetime, BeforeValidator(_iso_only)]


class ReplayRequest(Request):
    status: str | None = Field(None, description="Only dead letters with this outcome, e.g. expired")
    since: IsoDatetime | None = Field(None, description="Only dead letters failed at or after this time")


class ReplayOut(Document):
    replayed: int


class QueueOut(Document):
    new: int
    scheduled: int
    leased: int
    deadLetters: int
    backlog: int


# --- destination filters (Segment's Public API shape) ------------------------------------------------

FilterActionType = Literal["DROP", "SAMPLE", "DROP_PROPERTIES", "ALLOW_PROPERTIES"]


class FilterAction(Request):
    """``{"type": "DROP"}``, ``{"type": "SAMPLE", "percent", "path"?}``, or
    ``{"type": "DROP_PROPERTIES" | "ALLOW_PROPERTIES", "fields": {path: [keys]}}``."""

    type: FilterActionType
    percent: Annotated[float, Field(strict=True, ge=0, le=1)] | None = Field(
        None, description="SAMPLE: the share of matching events kept (0–1)"
    )
    path: str | None = Field(
        None, description="SAMPLE: a dot path; the same value there is always kept or always dropped"
    )
    fields: dict[str, list[str]] | None = Field(
        None, description='DROP_PROPERTIES / ALLOW_PROPERTIES: {path: [keys]}; "" is the top level'
    )


class FilterCreate(Request):
    sourceId: str | None = Field(None, description="Only events of this source; null: every source")
    if_: str = Field(alias="if", description="FQL condition (at most 5 KB), e.g. all or type = 'track'")
    actions: list[FilterAction]
    title: str = Field("", description="At most 64 characters")
    description: str = ""
    enabled: bool = True


class FilterUpdate(Request):
    sourceId: str | None = None
    if_: str | None = Field(None, alias="if")
    actions: list[FilterAction] | None = None
    title: str | None = None
    description: str | None = None
    enabled: bool | None = None


class DropActionOut(Document):
    type: Literal["DROP"]


class SampleActionOut(Document):
    type: Literal["SAMPLE"]
    percent: float
    path: str | None = None


class PropertiesActionOut(Document):
    type: Literal["DROP_PROPERTIES", "ALLOW_PROPERTIES"]
    fields: dict[str, list[str]]


FilterActionOut = Annotated[DropActionOut | SampleActionOut | PropertiesActionOut, Field(discriminator="type")]


class FilterOut(Document):
    id: str
    destinationId: str
    sourceId: str | None
    if_: str = Field(alias="if")
    actions: list[FilterActionOut]
    title: str
    description: str
    enabled: bool
    createdAt: str
    updatedAt: str


class FilterPreviewFilter(Request):
    if_: str = Field(alias="if")
    actions: list[FilterAction]


class FilterPreviewRequest(Request):
    filter: FilterPreviewFilter
    payload: dict[str, Any]


class FilterPreviewOut(Document):
    inputPayload: dict[str, Any]
    result: dict[str, Any] | None = Field(description="The event after the filter; null when it is dropped")
    reason: str | None = Field(None, description="Why it was dropped (sluice's addition)")


class FilterPreviewEnvelope(BaseModel):
    data: FilterPreviewOut
