"""Who may do what (Segment's roles). Pure: a check returns a decision value.

Roles (a token holds one or more):

- ``WORKSPACE_OWNER`` — everything.
- ``FUNCTIONS_ADMIN`` — create, edit, delete and preview functions; all of them, or only the
  listed ``functionIds`` (a scoped admin cannot create new functions).
- ``FUNCTIONS_READ_ONLY`` — view functions (all, or the listed ones) and their versions.
- ``SOURCE_ADMIN`` — manage sources, destinations and insert-function instances; needed *in
  addition* to a functions role to deploy a function or to connect/enable an instance.

Sources and destinations can be read by every role; their write keys and secrets are masked
for tokens that are not owners or source admins.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Role(StrEnum):
    WORKSPACE_OWNER = "WORKSPACE_OWNER"
    FUNCTIONS_ADMIN = "FUNCTIONS_ADMIN"
    FUNCTIONS_READ_ONLY = "FUNCTIONS_READ_ONLY"
    SOURCE_ADMIN = "SOURCE_ADMIN"


@dataclass(frozen=True, slots=True)
class Actor:
    """The caller: a token's name, roles and (for function roles) the functions it covers."""

    name: str
    roles: frozenset[Role]
    function_ids: frozenset[str] | None = None  # None = all functions
    token_id: str | None = None

    @property
    def owner(self) -> bool:
        return Role.WORKSPACE_OWNER in self.roles

    def covers(self, function_id: str | None) -> bool:
        return self.function_ids is None or (function_id is not None and function_id in self.function_ids)


SYSTEM = Actor("system", frozenset({Role.WORKSPACE_OWNER}))


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    missing: str = ""  # what the actor lacks, for the 403 message


ALLOW = Decision(True)


def _need(what: str) -> Decision:
    return Decision(False, what)


def can_read_function(actor: Actor, function_id: str) -> Decision:
    if actor.owner:
        return ALLOW
    if actor.roles & {Role.FUNCTIONS_ADMIN, Role.FUNCTIONS_READ_ONLY} and actor.covers(function_id):
        return ALLOW
    if Role.SOURCE_ADMIN in actor.roles:
        return ALLOW  # needed to connect instances
    return _need(f"Functions Read-only or Functions Admin for function {function_id}")


def can_list_functions(actor: Actor) -> Decision:
    if actor.owner or actor.roles & {Role.FUNCTIONS_ADMIN, Role.FUNCTIONS_READ_ONLY, Role.SOURCE_ADMIN}:
        return ALLOW
    return _need("a functions role")


def visible_function(actor: Actor, function_id: str) -> bool:
    """Whether a listed function is shown to this actor."""
    return can_read_function(actor, function_id).allowed


def can_create_function(actor: Actor) -> Decision:
    if actor.owner or (Role.FUNCTIONS_ADMIN in actor.roles and actor.function_ids is None):
        return ALLOW
    if Role.FUNCTIONS_ADMIN in actor.roles:
        return _need("Functions Admin for all functions (this token is limited to a list of functions)")
    return _need("Functions Admin")


def can_edit_function(actor: Actor, function_id: str) -> Decision:
    if actor.owner or (Role.FUNCTIONS_ADMIN in actor.roles and actor.covers(function_id)):
        return ALLOW
    return _need(f"Functions Admin for function {function_id}")


def can_preview(actor: Actor, function_id: str | None) -> Decision:
    """Preview runs code: a functions admin (covering the function, when one is named)."""
    if actor.owner or (Role.FUNCTIONS_ADMIN in actor.roles and (function_id is None or actor.covers(function_id))):
        return ALLOW
    return _need("Functions Admin" + (f" for function {function_id}" if function_id else ""))


def can_deploy(actor: Actor, function_id: str) -> Decision:
    if actor.owner:
        return ALLOW
    edit = can_edit_function(actor, function_id)
    if not edit.allowed:
        return edit
    if Role.SOURCE_ADMIN not in actor.roles:
        return _need("Source Admin (needed in addition to Functions Admin to deploy)")
    return ALLOW


def can_manage_connections(actor: Actor) -> Decision:
    """Sources, destinations and (with function access) insert-function instances."""
    if actor.owner or Role.SOURCE_ADMIN in actor.roles:
        return ALLOW
    return _need("Source Admin")


def can_manage_instance(actor: Actor, function_id: str) -> Decision:
    if actor.owner:
        return ALLOW
    if Role.SOURCE_ADMIN not in actor.roles:
        return _need("Source Admin (needed to connect, configure or enable an insert function)")
    return ALLOW


def can_read_connections(actor: Actor) -> Decision:
    return ALLOW if actor.roles else _need("any role")


def sees_secrets_of_connections(actor: Actor) -> bool:
    return actor.owner or Role.SOURCE_ADMIN in actor.roles


def owner_only(actor: Actor, what: str) -> Decision:
    return ALLOW if actor.owner else _need(f"Workspace Owner (to {what})")
