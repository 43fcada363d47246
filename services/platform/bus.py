"""The one message bus of the project.

Services are faust-streaming workers: :func:`create_app` makes the app and :func:`subscribe`
registers a handler for a topic. Every consumed message goes through the same path: decode and
validate (schemas), dead-letter with a reason if that fails, run the handler with retries, and
dead-letter with the error if it keeps failing. Offsets are committed after the handler returns
(at-least-once), so handlers are idempotent (dedupe by event/trial id in Redis).

The CLI and tests use plain aiokafka through :class:`KafkaPublisher`, :func:`ensure_topics` and
:func:`read_events`.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import socket
import time
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Awaitable, Callable, Protocol

import faust
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import (
    KafkaConnectionError,
    KafkaTimeoutError,
    LeaderNotAvailableError,
    NodeNotReadyError,
    NotLeaderForPartitionError,
    RequestTimedOutError,
    TopicAlreadyExistsError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

import schemas
from schemas import Event, SchemaError
from schemas.events import DeadLetter
from services.platform.connections import faust_credentials, kafka_kwargs, redis_client
from services.platform.observability import (
    DEAD_LETTERS,
    EVENT_ID,
    EVENTS_CONSUMED,
    EVENTS_PRODUCED,
    HANDLER_SECONDS,
    SEARCH_ID,
    TRIAL_ID,
    serve_http,
)
from services.platform.settings import Settings
from services.domain.space import set_max_space_size
from services.platform.topics import ALL_TOPICS, topic_events, topic_for
from services.platform.typed import check_handles, payload_types

log = logging.getLogger("falcon.bus")
RAW_KEEP = 64 * 1024


class Reject(Exception):
    """Raised by a handler for a well-formed event it must not act on (unknown search id,
    configuration outside the space, ...): the event is dead-lettered with this reason."""


class Publisher(Protocol):
    async def publish(self, event: Event, partition: int | None = None) -> None: ...


Handler = Callable[[Event, Publisher], Awaitable[None]]
UnusableHandler = Callable[[Event, ValueError, Publisher], Awaitable[None]]


def encode_for_topic(event: Event, settings: Settings) -> tuple[str, bytes, bytes]:
    """(topic, key, value): every search event is keyed by its search id, so one search's
    events share a partition and are handled in order by one consumer."""
    topic = topic_for(event.type, event.data)
    return topic, event.search_id.encode(), schemas.encode(event, settings.max_message_bytes)


def dead_letter_event(*, topic: str, partition: int, offset: int, key: bytes | None, raw: bytes | None,
                      reason: str, service: str, search_id: str = "",
                      causation_id: str | None = None) -> Event:
    raw = raw or b""
    letter = DeadLetter(source_topic=topic, partition=partition, offset=offset,
                        key=key.decode("utf-8", "replace")[:256] if key is not None else None,
                        reason=reason[:4000] or "unknown", service=service,
                        raw_b64=base64.b64encode(raw[:RAW_KEEP]).decode(), raw_size=len(raw))
    return Event.new(letter, search_id if _safe_id(search_id) else "", service, causation_id=causation_id)


def _safe_id(s: str) -> bool:
    return len(s) <= 128 and all(c.isalnum() or c in "._:-" for c in s)


# --------------------------------------------------------------------------------------------
# faust side (services)
# --------------------------------------------------------------------------------------------
def create_app(service: str, settings: Settings) -> faust.App:
    """A faust app whose consumer group is ``falcon-<service>``: start N copies of a service and
    Kafka splits the partitions between them."""
    set_max_space_size(settings.max_space_size)      # FALCON_MAX_SPACE_SIZE, for every space this service reads
    brokers = ";".join(f"kafka://{b.strip()}" for b in settings.broker.split(","))
    app = faust.App(
        f"falcon-{service}",
        broker=brokers,
        store="memory://",                     # state lives in Redis, never in faust Tables
        topic_partitions=settings.partitions,
        topic_replication_factor=1,
        topic_disable_leader=True,
        web_enabled=False,
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=settings.session_timeout_s,
        broker_heartbeat_interval=settings.heartbeat_s,
        broker_max_poll_interval=3600.0,       # a trial may run long inside its handler
        broker_credentials=faust_credentials(settings),
        producer_acks=-1,
        producer_max_request_size=settings.max_message_bytes + 64 * 1024,
        consumer_max_fetch_size=settings.max_message_bytes * 4,
        stream_wait_empty=False,
    )
    app.conf.falcon_service = service  # type: ignore[attr-defined]
    if settings.metrics_port:
        @app.task
        async def serve_metrics_and_health() -> None:   # noqa: ANN202
            redis = redis_client(settings)        # one client for every probe, not one per probe
            await serve_http(service, settings.metrics_port, lambda: _health(app, redis))
    return app


async def _health(app: Any, redis: Any) -> dict[str, str]:
    """Redis answers a PING and this worker's consumer is running."""
    checks = {"consumer": "ok" if app.consumer is not None and not app.consumer.should_stop else "stopped"}
    try:
        await asyncio.wait_for(redis.ping(), 2.0)
        checks["redis"] = "ok"
    except Exception as exc:   # noqa: BLE001 — reported, not raised
        checks["redis"] = f"{type(exc).__name__}: {exc}"[:200]
    return checks


@dataclass
class FaustPublisher:
    app: faust.App
    settings: Settings
    _topics: dict[str, Any] = field(default_factory=dict)
    _declared: set[str] = field(default_factory=set)

    def _topic(self, name: str) -> Any:
        if name not in self._topics:
            self._topics[name] = self.app.topic(name, key_type=bytes, value_type=bytes,
                                                key_serializer="raw", value_serializer="raw",
                                                partitions=self.settings.partitions)
        return self._topics[name]

    async def publish(self, event: Event, partition: int | None = None) -> None:
        """``partition``: where to put it (a trial routed to an idle runner); default by key."""
        topic, key, value = encode_for_topic(event, self.settings)
        channel = self._topic(topic)
        if topic not in self._declared:     # e.g. a trial class topic no runner has subscribed to yet
            await channel.maybe_declare()
            self._declared.add(topic)
        fut = await channel.send(key=key, value=value, partition=partition)
        await fut  # wait for the broker's ack before the consumed offset can be committed
        EVENTS_PRODUCED.labels(self.app.conf.falcon_service, event.type).inc()


def _publisher(app: faust.App, settings: Settings) -> FaustPublisher:
    publisher = getattr(app, "_falcon_publisher", None) or FaustPublisher(app, settings)
    app._falcon_publisher = publisher  # type: ignore[attr-defined]
    return publisher


def subscribe(app: faust.App, settings: Settings, topic: str, handler: Handler,
              on_unusable: UnusableHandler | None = None) -> FaustPublisher:
    """Register ``handler`` for every valid event on ``topic`` (shared by the service's consumer
    group); returns the app's publisher. ``on_unusable``: what to do with an event whose payload
    the schema admits but the domain cannot use (default: dead-letter it)."""
    service = app.conf.falcon_service  # type: ignore[attr-defined]
    publisher = _publisher(app, settings)
    channel = publisher._topic(topic)
    expected = topic_events(topic)
    check_handles(handler, expected, f"topic {topic}")       # TypeError at start, not a dead letter later

    async def agent(stream: Any) -> None:
        async for ev in stream.events():
            msg = ev.message
            await handle_message(service=service, settings=settings, publisher=publisher, handler=handler,
                                 topic=msg.topic, partition=msg.partition, offset=msg.offset,
                                 key=msg.key, raw=msg.value, expect=expected, on_unusable=on_unusable)

    agent.__name__ = f"{service}_{topic.replace('-', '_').replace('.', '_')}"
    agent.__qualname__ = agent.__name__
    app.agent(channel, name=f"{service}.{topic}")(agent)
    return publisher


def follow(app: faust.App, settings: Settings, topic: str, handler: Handler) -> None:
    """Every process of the service sees every event on ``topic``, from its beginning (not
    shared by the consumer group): for small topics that tell each process a fact it keeps in
    memory, e.g. which knowledge versions exist (trees-ready). Invalid events are skipped with
    a warning (the topic's regular consumers dead-letter them)."""
    service = app.conf.falcon_service  # type: ignore[attr-defined]
    publisher = _publisher(app, settings)
    check_handles(handler, topic_events(topic), f"topic {topic}")

    async def follow_topic() -> None:
        while True:
            try:
                async for item in read_events(settings, (topic,), follow=True):
                    if item.event is None:
                        log.warning("follow %s@%d: skipped: %s", topic, item.offset, item.error)
                        continue
                    try:
                        item.event.payload
                        await handler(item.event, publisher)
                    except Exception as exc:  # noqa: BLE001 - one bad event must not stop the follower
                        log.warning("follow %s@%d: %s: %s", topic, item.offset, type(exc).__name__, exc)
            except Exception as exc:  # noqa: BLE001 - broker not up yet, topic not created yet
                log.warning("following %s: %s; retrying", topic, exc)
                await asyncio.sleep(1.0)

    follow_topic.__name__ = f"{service}_follow_{topic.replace('-', '_').replace('.', '_')}"
    app.task(follow_topic)


async def handle_message(*, service: str, settings: Settings, publisher: Publisher, handler: Handler,
                         topic: str, partition: int, offset: int, key: bytes | None, raw: bytes | None,
                         expect: tuple[str, ...], on_unusable: UnusableHandler | None = None) -> None:
    """Decode -> typed payload -> handler. Never raises: one bad message must not stop a consumer.

    Bad bytes and rejected events are dead-lettered at once; a failing handler is retried with
    backoff, forever while the failure is the infrastructure's (broker, Redis), and up to
    ``handler_retries`` times otherwise before it is dead-lettered with the error. Writing the
    dead letter itself is retried forever: dropping it would lose the message."""
    try:
        event = schemas.decode(raw, settings.max_message_bytes, expect=expect)
        event.payload                    # typed once, here at the edge
    except SchemaError as exc:
        log.warning("dead-letter %s[%d]@%d: %s", topic, partition, offset, exc)
        DEAD_LETTERS.labels(service, topic).inc()
        await _publish_forever(publisher, dead_letter_event(
            topic=topic, partition=partition, offset=offset, key=key, raw=raw, reason=str(exc), service=service))
        return
    except ValueError as exc:            # schema-valid, but the domain cannot use it (e.g. an impossible space)
        if on_unusable is None:
            log.warning("dead-letter %s[%d]@%d: %s", topic, partition, offset, exc)
            DEAD_LETTERS.labels(service, topic).inc()
            await _publish_forever(publisher, dead_letter_event(
                topic=topic, partition=partition, offset=offset, key=key, raw=raw, service=service,
                reason=f"unusable {event.type}: {exc}", search_id=event.search_id, causation_id=event.event_id))
            return
        unusable, error = on_unusable, exc
        handler = lambda e, p: unusable(e, error, p)  # noqa: E731 - handled like any event: retries, dead letter
    else:
        takes = payload_types(handler)       # the handler's signature names what it takes
        if takes is not None and not isinstance(event.payload, takes):
            reason = f"{event.type} is not what {service} handles here ({', '.join(c.__name__ for c in takes)})"
            log.warning("dead-letter %s[%d]@%d: %s", topic, partition, offset, reason)
            DEAD_LETTERS.labels(service, topic).inc()
            await _publish_forever(publisher, dead_letter_event(
                topic=topic, partition=partition, offset=offset, key=key, raw=raw, reason=reason, service=service,
                search_id=event.search_id, causation_id=event.event_id))
            return
    SEARCH_ID.set(event.search_id or None)
    EVENT_ID.set(event.event_id)
    TRIAL_ID.set(event.data.get("trial_id") if isinstance(event.data, dict) else None)
    delay = settings.retry_backoff_s
    attempt = 0
    while True:
        try:
            started = time.perf_counter()
            await handler(event, publisher)
            HANDLER_SECONDS.labels(service, event.type).observe(time.perf_counter() - started)
            EVENTS_CONSUMED.labels(service, topic, event.type).inc()
            return
        except Reject as exc:
            reason = f"rejected by {service}: {exc}"
            break
        except Exception as exc:  # noqa: BLE001 - any handler failure is retried, then dead-lettered
            if is_transient(exc):
                # broker or Redis unreachable: the event is fine, wait for the infrastructure
                log.warning("search=%s event=%s waiting for infrastructure: %s: %s", event.search_id,
                            event.event_id, type(exc).__name__, exc)
            else:
                attempt += 1
                reason = f"handler failed {attempt}x in {service}: {type(exc).__name__}: {exc}"
                log.warning("search=%s event=%s %s", event.search_id, event.event_id, reason)
                if attempt >= settings.handler_retries:
                    break
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
    log.warning("dead-letter search=%s event=%s: %s", event.search_id, event.event_id, reason)
    DEAD_LETTERS.labels(service, topic).inc()
    await _publish_forever(publisher, dead_letter_event(
        topic=topic, partition=partition, offset=offset, key=key, raw=raw, reason=reason, service=service,
        search_id=event.search_id, causation_id=event.event_id))


def is_transient(exc: BaseException) -> bool:
    """Failures of the infrastructure (retry until it is back), not of the event or the code."""
    return isinstance(exc, (ConnectionError, TimeoutError, asyncio.TimeoutError, RedisConnectionError,
                            RedisTimeoutError, KafkaConnectionError, KafkaTimeoutError, RequestTimedOutError,
                            NotLeaderForPartitionError, LeaderNotAvailableError, NodeNotReadyError))


async def _publish_forever(publisher: Publisher, event: Event) -> None:
    delay = 0.2
    while True:
        try:
            await publisher.publish(event)
            return
        except Exception as exc:  # noqa: BLE001
            log.error("cannot publish %s (%s); retrying in %.1fs", event.type, exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)


def run_worker(app: faust.App, settings: Settings) -> None:
    """Run a service until SIGTERM/SIGINT (logs as text, or JSON lines with FALCON_LOG_FORMAT=json)."""
    logging_config = None
    if settings.log_format == "json":
        logging_config = {
            "version": 1, "disable_existing_loggers": False,
            "formatters": {"json": {"()": "services.platform.observability.JsonFormatter",
                                    "service": app.conf.falcon_service}},
            "handlers": {"out": {"class": "logging.StreamHandler", "formatter": "json"}},
            "root": {"handlers": ["out"], "level": settings.log_level.upper()}}
    worker = faust.Worker(app, loglevel=settings.log_level.upper(), quiet=True, logging_config=logging_config)
    worker.execute_from_commandline()


def instance_name(service: str) -> str:
    return f"{service}@{socket.gethostname()}:{os.getpid()}"


# --------------------------------------------------------------------------------------------
# aiokafka side (CLI, tests, local stack)
# --------------------------------------------------------------------------------------------
async def ensure_topics(settings: Settings, topics: tuple[str, ...] = ALL_TOPICS, timeout_s: float = 30) -> None:
    """Create the project's topics (idempotent); waits for the broker to come up."""
    deadline = time.monotonic() + timeout_s
    while True:
        admin = AIOKafkaAdminClient(bootstrap_servers=settings.broker, request_timeout_ms=5000,
                                    **kafka_kwargs(settings))
        try:
            await admin.start()
            existing = set(await admin.list_topics())
            missing = [NewTopic(t, num_partitions=settings.partitions, replication_factor=1)
                       for t in topics if t not in existing]
            if missing:
                try:
                    await admin.create_topics(missing)
                except TopicAlreadyExistsError:
                    pass
            return
        except Exception as exc:  # noqa: BLE001 - broker still starting
            if time.monotonic() > deadline:
                raise RuntimeError(f"broker {settings.broker} not reachable: {exc}") from exc
            await asyncio.sleep(0.3)
        finally:
            await admin.close()


class KafkaPublisher:
    """aiokafka producer that speaks the contract (validates before sending)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._producer = AIOKafkaProducer(bootstrap_servers=settings.broker, acks="all",
                                          max_request_size=settings.max_message_bytes + 64 * 1024,
                                          **kafka_kwargs(settings))

    async def __aenter__(self) -> "KafkaPublisher":
        try:
            await self._producer.start()
        except BaseException:
            await self._producer.stop()        # else asyncio warns "Unclosed AIOKafkaProducer" at exit
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._producer.stop()

    async def publish(self, event: Event, partition: int | None = None) -> None:
        topic, key, value = encode_for_topic(event, self.settings)
        await self._producer.send_and_wait(topic, value, key=key, partition=partition)

    async def publish_raw(self, topic: str, value: bytes | None, key: bytes | None = None) -> None:
        """For tests and tools: put arbitrary bytes on a topic (e.g. a poison message)."""
        await self._producer.send_and_wait(topic, value, key=key)


@dataclass(frozen=True)
class LoggedEvent:
    topic: str
    partition: int
    offset: int
    event: Event | None          # None when the bytes are not a valid event
    error: str | None


async def read_events(settings: Settings, topics: tuple[str, ...] = ALL_TOPICS, *, idle_s: float = 1.5,
                      until: Callable[[LoggedEvent], bool] | None = None,
                      timeout_s: float | None = None, follow: bool = False) -> AsyncIterator[LoggedEvent]:
    """Read the log of ``topics`` from the beginning, outside any consumer group.

    Stops after ``idle_s`` without new messages (tansu's end offsets are not reliable, so "caught
    up" means "quiet"), or once ``until`` returns True, or after ``timeout_s``. With ``until`` set,
    quiet periods do not stop the read (it waits for the awaited event); with ``follow``, it never
    stops by itself (it keeps reading new events)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.broker, enable_auto_commit=False,
                                auto_offset_reset="earliest", group_id=None,
                                fetch_max_bytes=settings.max_message_bytes * 8,
                                max_partition_fetch_bytes=settings.max_message_bytes * 2,
                                **kafka_kwargs(settings))
    try:
        await consumer.start()
    except BaseException:
        await consumer.stop()
        raise
    try:
        parts = []
        for t in topics:
            for p in sorted(consumer.partitions_for_topic(t) or await _partitions(consumer, t)):
                parts.append(TopicPartition(t, p))
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        start = last = time.monotonic()
        while True:
            batch = await consumer.getmany(timeout_ms=200, max_records=500)
            now = time.monotonic()
            if batch:
                last = now
            for tp, messages in batch.items():
                for m in messages:
                    try:
                        item = LoggedEvent(tp.topic, tp.partition, m.offset,
                                           schemas.decode(m.value, settings.max_message_bytes), None)
                    except SchemaError as exc:
                        item = LoggedEvent(tp.topic, tp.partition, m.offset, None, str(exc))
                    yield item
                    if until is not None and until(item):
                        return
            if timeout_s is not None and now - start > timeout_s:
                return
            if until is None and not follow and now - last > idle_s:
                return
    finally:
        await consumer.stop()


async def _partitions(consumer: AIOKafkaConsumer, topic: str) -> set[int]:
    for _ in range(50):
        await consumer.topics()  # refreshes cluster metadata
        parts = consumer.partitions_for_topic(topic)
        if parts:
            return parts
        await asyncio.sleep(0.1)
    raise RuntimeError(f"topic {topic!r} does not exist")
