"""The assistant's HTTP API: the Q&A turn as Server-Sent Events or as JSON, histories, courses."""

from __future__ import annotations

import contextlib
import inspect

from django.conf import settings
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.tokens import request_mfa
from core.database import in_db_thread
from core.exceptions import APIError
from core.inputs import query_input
from core.network import Origin
from core.permissions import IsAdmin
from core.ratelimit import enforce, key_by_user
from core.schema import ADMIN, RUNTIME
from core.serializers import ErrorOutput
from streaming import serializers as s
from streaming.delivery import socket_sink
from streaming.engine import TurnRequest, qanda_run, run_turn
from streaming.selectors import (
    course_list,
    history_get,
    history_list,
    history_list_all,
    history_within,
)
from streaming.services import turn_prepare
from streaming.sse import sse_response

ERRORS = {400: ErrorOutput, 401: ErrorOutput, 403: ErrorOutput, 429: ErrorOutput}

STREAM_DESCRIPTION = """\
`text/event-stream; charset=utf-8`: one `data: <json>` line and a blank line per event. `connected`
comes first and `done` last, with `complete` or `error` right before `done`:

| type | fields |
|---|---|
| `connected` | `message` |
| `stream` | `prompt` (the answer so far), `delta` (the new text) |
| `thinking` | `id` (`round-N`), `round`, `delta`; the round closes with `text`, `done: true` and, \
from Anthropic, `signature` |
| `tool_call` | `call_id`, `name`, `arguments`, `displayInfo` {`icon`, `label`} |
| `tool_result` | `call_id`, `name`, `response`, `success`, `responseDurationMs` |
| `complete` | `success`, `usage` (the turn's total tokens, a number), `usageDetails` \
{`input_tokens`, `output_tokens`, `total_tokens`, `cached_input_tokens`}, `outputs`, `model`, \
`cached`, `completion` |
| `error` | `error` {`message`, `status`} |
| `done` | |

Thinking is sent only where the institution displays it (always for personal use). While a long \
tool call runs, a `: keep-alive` comment line is sent every 15 seconds. Closing the connection \
cancels the turn."""


class AsyncApiView(APIView):
    """An APIView whose handlers are coroutines, for responses that stream.

    DRF's dispatch is synchronous. Here the request's checks run in one call to the assistant's
    database threads: DRF's (authentication, permissions), then the view's own `admit(request)`
    (rate limit, validation, preparation), whose result the handler finds in `self.admitted`.
    The handler runs on the event loop, so it may return a StreamingHttpResponse over an async
    generator.
    """

    view_is_async = True
    admitted = None

    def admit(self, request):
        """The view's own checks, after DRF's; raise to refuse. Runs in a database thread."""
        return None

    def _checks(self, request, handler, *args, **kwargs):
        self.initial(request, *args, **kwargs)
        # Only the view's own (async) handlers; DRF's OPTIONS or a 405 need no admission.
        return self.admit(request) if inspect.iscoroutinefunction(handler) else None

    async def dispatch(self, request, *args, **kwargs):
        self.args, self.kwargs = args, kwargs
        request = self.initialize_request(request, *args, **kwargs)
        self.request = request
        self.headers = self.default_response_headers
        try:
            method = request.method.lower()
            handler = getattr(self, method, None) if method in self.http_method_names else None
            checks = in_db_thread(self._checks)
            self.admitted = await checks(request, handler, *args, **kwargs)
            response = (handler or self.http_method_not_allowed)(request, *args, **kwargs)
            if inspect.isawaitable(response):
                response = await response
        except Exception as exc:
            response = self.handle_exception(exc)
        self.response = self.finalize_response(request, response, *args, **kwargs)
        return self.response


def _prepare(request, *, with_socket: bool = False) -> tuple[TurnRequest, str]:
    """Rate limit, validate and check the request; every refusal happens before a stream opens."""
    enforce(request, group="qanda", rate=settings.WORKGATE_QANDA_RATE, key=key_by_user)
    data = s.QandaInput(data=request.data)
    data.is_valid(raise_exception=True)
    args = data.validated_data.get("requestArgs") or {}
    course = args.get("selectedCourse") or {}
    turn = turn_prepare(
        user=request.user,
        inputs=data.validated_data["inputs"],
        origin=Origin.of(request),
        mfa_verified=request_mfa(request),
        institution_public_id=args.get("institutionPublicId"),
        assistant_id=args.get("assistantId"),
        default_assistant="assistantId" in args and args["assistantId"] is None,
        course_id=course.get("course_id"),
        course_name=course.get("course_name", ""),
        rag_only=args.get("ragOnly", False),
        timezone_name=args.get("userTimezone"),
    )
    return turn, (args.get("socketId") or "") if with_socket else ""


class StreamNegotiation(DefaultContentNegotiation):
    """Whatever the client accepts (SSE clients send `Accept: text/event-stream`): the stream
    itself is not a DRF response, and refusals before it are JSON in the one error shape."""

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type


class QandaStreamApi(AsyncApiView):
    audience = RUNTIME
    content_negotiation_class = StreamNegotiation

    def admit(self, request):
        return _prepare(request)

    @extend_schema(
        tags=["assistant"],
        request=s.QandaInput,
        responses={
            (200, "text/event-stream"): OpenApiResponse(
                response=OpenApiTypes.STR, description=STREAM_DESCRIPTION
            ),
            **ERRORS,
        },
        summary="Ask the assistant; the answer streams as Server-Sent Events",
    )
    async def post(self, request):
        turn, _ = self.admitted
        return sse_response(run_turn(turn))


class QandaApi(AsyncApiView):
    audience = RUNTIME

    def admit(self, request):
        return _prepare(request, with_socket=True)

    @extend_schema(
        tags=["assistant"],
        request=s.QandaInput,
        responses={200: s.QandaOutput, **ERRORS, 502: ErrorOutput},
        summary="Ask the assistant; the whole answer comes back as JSON",
        description="With `requestArgs.socketId` the turn also streams to that Socket.IO "
        "socket; `streamingFailed: true` says it could not.",
    )
    async def post(self, request):
        turn, socket_id = self.admitted
        async with contextlib.AsyncExitStack() as stack:
            sink = None
            if socket_id:
                sink = await stack.enter_async_context(
                    socket_sink(user=request.user, socket_id=socket_id)
                )
            cancel = sink.cancelled if sink is not None else None
            outcome = await qanda_run(turn, sink=sink, cancel=cancel)
        if outcome.error is not None:
            failure = APIError(outcome.error.status, outcome.error.message, "assistant_error")
            failure.wait = outcome.error.retry_after  # DRF's handler sends it as Retry-After
            raise failure
        return Response(
            {
                "success": True,
                "streamingFailed": bool(socket_id) and (sink is None or outcome.streaming_failed),
                "outputs": outcome.outputs,
                "usage": outcome.usage["total_tokens"],
                "usageDetails": outcome.usage,
                "model": outcome.model,
                "query_duration_ms": outcome.duration_ms,
                "historyId": outcome.history_id,
            }
        )


def _history_listing(histories, output: type[s.HistoryOutput]) -> Response:
    """Whole turns, newest first, in at most WORKGATE_HISTORY_LIST_MAX_BYTES of JSON (one turn
    larger than that comes alone); `truncated` says turns were left out for it."""
    budget = settings.WORKGATE_HISTORY_LIST_MAX_BYTES
    candidates, truncated = history_within(histories, max_bytes=budget)
    renderer = JSONRenderer()
    data: list[dict] = []
    used = len(renderer.render({"success": True, "truncated": True, "data": []}))
    for item in output(candidates, many=True).data:
        size = len(renderer.render(item)) + 1  # and the comma before the next
        if data and used + size > budget:
            truncated = True
            break
        data.append(item)
        used += size
    return Response({"success": True, "truncated": truncated, "data": data})


class UserHistoryListApi(APIView):
    audience = RUNTIME

    @extend_schema(
        tags=["assistant"],
        operation_id="user_histories_list",
        parameters=[s.HistoryQueryInput],
        responses={200: s.HistoryListOutput, 400: ErrorOutput, 401: ErrorOutput},
        summary="The caller's own assistant turns, newest first",
    )
    def get(self, request):
        histories = history_list(user=request.user, **query_input(s.HistoryQueryInput, request))
        return _history_listing(histories, s.HistoryOutput)


class UserHistoryDetailApi(APIView):
    audience = RUNTIME

    @extend_schema(
        tags=["assistant"],
        responses={200: s.HistoryDetailOutput, 401: ErrorOutput, 404: ErrorOutput},
        summary="One of the caller's assistant turns",
    )
    def get(self, request, history_id: int):
        history = history_get(user=request.user, history_id=history_id)
        return Response({"success": True, "data": s.HistoryOutput(history).data})


class AdminHistoryListApi(APIView):
    audience = ADMIN
    permission_classes = [IsAdmin]
    admin_permissions = {"GET": ("streaming.view_history",)}

    @extend_schema(
        tags=["assistant"],
        operation_id="admin_histories_list",
        parameters=[s.AdminHistoryQueryInput],
        responses={200: s.AdminHistoryListOutput, **ERRORS},
        summary="Everyone's assistant turns with their latency (administrators)",
    )
    def get(self, request):
        histories = history_list_all(**query_input(s.AdminHistoryQueryInput, request))
        return _history_listing(histories, s.AdminHistoryOutput)


class UserCourseListApi(APIView):
    audience = RUNTIME

    @extend_schema(
        tags=["assistant"],
        operation_id="user_courses_list",
        responses={200: s.CourseListOutput, 401: ErrorOutput},
        summary="The caller's conversations (courses) with their turn counts",
    )
    def get(self, request):
        courses = course_list(user=request.user)
        return Response({"success": True, "data": s.CourseOutput(courses, many=True).data})
