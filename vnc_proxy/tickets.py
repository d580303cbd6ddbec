"""Desktop tickets as JWTs: their own token type and audience, a 60-second life, one use.

The JWT carries jti, user_id, workspaceId (the runtime id), exp and the account's sign-in epoch
when it was minted (a ticket minted while the account signs out everywhere is refused at the
relay, though the sign-out's void missed its row); the database row (see models.Ticket) is what
makes it single-use. Neither an access token nor any token of another
type, audience or key is accepted as a ticket, and a ticket is not accepted as an access token
(its token_type differs).

App tickets (app_proxy/tickets.py) are the same tokens with their own type and audience, and
both kinds are spent, replayed and voided by the functions at the end of this module: one
ticket spender.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db.models import F, QuerySet
from django.utils import timezone
from rest_framework_simplejwt.backends import TokenBackend
from rest_framework_simplejwt.exceptions import TokenError
from rest_framework_simplejwt.tokens import Token

from accounts.tokens import EPOCH_CLAIM, token_epoch

TICKET_TTL_SECONDS = 60
TICKET_TYPE = "vnc_ticket"
TICKET_AUDIENCE = "workgate:vnc-relay"
WORKSPACE_CLAIM = "workspaceId"


def now() -> datetime:
    """The clock every ticket decision reads; tests replace it to move time."""
    return timezone.now()


class InvalidTicket(Exception):
    """The string is not a ticket we issued, or no longer a valid one; the message says why."""


@functools.lru_cache(maxsize=8)
def _backend(algorithm: str, signing_key: str, audience: str) -> TokenBackend:
    return TokenBackend(algorithm, signing_key=signing_key, audience=audience)


class TicketToken(Token):
    token_type = TICKET_TYPE
    audience = TICKET_AUDIENCE
    lifetime = timedelta(seconds=TICKET_TTL_SECONDS)

    @property
    def token_backend(self) -> TokenBackend:
        # Looked up per use, so tests that change the signing key are honoured; made once per
        # key (a backend prepares its key on first use: a tenth of a ticket's CPU each time).
        jwt = settings.SIMPLE_JWT
        return _backend(
            jwt.get("ALGORITHM", "HS256"),
            jwt.get("SIGNING_KEY", settings.SECRET_KEY),
            self.audience,
        )

    def check_exp(self, claim: str = "exp", current_time: datetime | None = None) -> None:
        super().check_exp(claim, current_time or now())


@dataclass(frozen=True)
class TicketClaims:
    jti: str
    user_id: int
    workspace_id: str
    expires_at: datetime
    sign_in_epoch: int


def ticket_mint(
    *,
    user_id: int,
    sign_in_epoch: int,
    workspace_id: str,
    issued_at: datetime,
    kind: type[TicketToken] = TicketToken,
) -> tuple[str, TicketClaims]:
    token = kind()
    token.set_iat(at_time=issued_at)
    token.set_exp(from_time=issued_at)
    token["aud"] = kind.audience
    token[settings.SIMPLE_JWT.get("USER_ID_CLAIM", "user_id")] = str(user_id)
    token[EPOCH_CLAIM] = sign_in_epoch
    token[WORKSPACE_CLAIM] = workspace_id
    return str(token), _claims(token)


def ticket_decode(raw: str, *, kind: type[TicketToken] = TicketToken) -> TicketClaims:
    """Verify signature, algorithm, audience, type, jti and exp; InvalidTicket otherwise."""
    if not raw or len(raw) > 4096:
        raise InvalidTicket("missing ticket" if not raw else "malformed ticket")
    try:
        token = kind(raw)
    except TokenError as exc:
        raise InvalidTicket(_reason(exc)) from None
    try:
        return _claims(token)
    except (KeyError, TypeError, ValueError):
        raise InvalidTicket("malformed ticket") from None


def _claims(token: Token) -> TicketClaims:
    workspace_id = token[WORKSPACE_CLAIM]
    epoch = token_epoch(token)
    if not isinstance(workspace_id, str):
        raise TypeError("workspaceId")
    if not isinstance(epoch, int) or isinstance(epoch, bool):
        raise TypeError("epoch")
    return TicketClaims(
        jti=str(token["jti"]),
        user_id=int(token[settings.SIMPLE_JWT.get("USER_ID_CLAIM", "user_id")]),
        workspace_id=workspace_id,
        expires_at=datetime.fromtimestamp(int(token["exp"]), tz=UTC),
        sign_in_epoch=epoch,
    )


def _reason(exc: TokenError) -> str:
    message = str(exc.args[0] if exc.args else exc).lower()
    return "ticket expired" if "expired" in message else "invalid ticket"


# --- Spending: the one way a single-use ticket of either kind is used -----------------------------


def ticket_spend(tickets: QuerySet, *, jti: str, at: datetime, used_ip: str | None, **also) -> bool:
    """Use ticket `jti` among `tickets` (Ticket or AppTicket rows): one conditional UPDATE that
    sets `used_at` only while it is unused and unexpired at `at`, which exactly one of any
    number of concurrent attempts, in any number of processes, wins. `also`: other columns the
    winner sets. Whether this call spent it. Called outside any transaction, so the spend
    commits at once."""
    unspent = tickets.filter(jti=jti, used_at__isnull=True, expires_at__gt=at)
    return bool(unspent.update(used_at=at, used_ip=used_ip, **also))


def ticket_replayed(tickets: QuerySet, *, jti: str, at: datetime) -> bool:
    """Ticket `jti` was shown again after it was used or expired: whether this is the first
    time (only that one is audited, so that replaying a captured ticket cannot grow the audit
    log without bound)."""
    return bool(tickets.filter(jti=jti, replayed_at__isnull=True).update(replayed_at=at))


def tickets_unspent_void(tickets: QuerySet, *, at: datetime) -> int:
    """Expire every ticket among `tickets` not yet used (the account signed out everywhere);
    how many. A spend that read its clock before this ran is refused too: they expire as of
    their issue."""
    unspent = tickets.filter(used_at__isnull=True, expires_at__gt=at)
    return unspent.update(expires_at=F("issued_at"))
