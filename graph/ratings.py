"""Ratings: a served answer scored after the fact, in [0, 1], by a user or a grader.

A rating is credited to the model that served the request, per (domain, task_type), in
Redis, where every replica's `learned` policies read it (nodes/learned.py); it is also
appended to the JSONL feedback log as the spec's `user_feedback`, the durable record.
Rating a request again replaces its earlier rating (a correction is not a second vote).
With a half-life (`RATING_HALF_LIFE_S`, default 30 days), a rating's weight halves with
each half-life that passes, so a model that changed behind the same id is judged on what
it does now, and one no longer rated drifts back towards its static score.
"""

from __future__ import annotations

import math
from datetime import datetime, timezone
from typing import Any

import redis

from graph.redact import redact
from graph.services import Services

RATE = """
local raw = redis.call('GET', KEYS[1])
if not raw then return -1 end
local served = cjson.decode(raw)
if served['model_id'] ~= ARGV[2] then return -2 end
local model, quality = ARGV[2], tonumber(ARGV[1])
local now, half_life = tonumber(ARGV[3]), tonumber(ARGV[4])
local function weight(since)
  if half_life <= 0 or not since or now <= since then return 1 end
  return 2 ^ (-(now - since) / half_life)
end
local n_f, q_f, t_f = 'n:' .. model, 'q:' .. model, 't:' .. model
local tally = redis.call('HMGET', KEYS[2], n_f, q_f, t_f)
local at = tonumber(tally[3])
local f = weight(at)
local n, q = (tonumber(tally[1]) or 0) * f, (tonumber(tally[2]) or 0) * f
local old = served['quality']
if old then
  local w = weight(served['rated_at'])
  n, q = math.max(n - w, 0), math.max(q - old * w, 0)
end
if not at or at < now then at = now end
redis.call('HSET', KEYS[2], n_f, tostring(n + 1), q_f, tostring(q + quality), t_f, tostring(at))
served['quality'], served['rated_at'] = quality, now
redis.call('SET', KEYS[1], cjson.encode(served), 'KEEPTTL')
if old then return tostring(old) end
return ''
"""
"""KEYS: the request's record (JSON: who served it, and its rating and when, once rated),
its task kind's tally. ARGV: quality, the model the caller read in the record, now (epoch
seconds), the half-life in seconds (0: no decay). The tally is decayed to now, the
replaced rating (at its decayed weight) taken out and the new one put in at full weight:
`graph.store.Credit.credit` is the same arithmetic in Python. Returns -1 for a request
no longer known, -2 when another model has served that id since the caller read it (a
reused thread id: read again), else the rating it replaced ('' if none)."""


class RatingError(ValueError):
    """A rating that cannot be recorded; the message says why and what to do."""


class RatingsOff(RatingError):
    """`RATING_WINDOW_S=0`: no request is ratable."""


class NotRatable(RatingError):
    """No served request has that id within the rating window."""


def check_quality(quality: Any) -> float:
    """The rating as a float in [0, 1], or a RatingError naming the value."""
    if isinstance(quality, bool) or not isinstance(quality, (int, float)):
        raise RatingError(f"quality {quality!r}: must be a number in [0, 1]")
    if not math.isfinite(quality) or not 0.0 <= quality <= 1.0:
        raise RatingError(f"quality {quality!r}: must be in [0, 1]")
    return float(quality) + 0.0  # -0.0 is 0


MAX_COMMENT = 2000
"""A rating's comment, in characters: the same bound for every way of rating."""


def rate(services: Services, request_id: str, quality: float,
         comment: str | None = None) -> dict[str, Any]:
    """Rate a served request; returns the rating record appended to the feedback log.

    Raises:
        RatingError: a bad quality, ratings switched off, or a request id that never served
            (or is older than the rating window); nothing was recorded.
        redis.RedisError: Redis did not answer; nothing was recorded, so retry.
    """
    quality = check_quality(quality)
    if not request_id or not isinstance(request_id, str):
        raise RatingError(f"request_id {request_id!r}: must be a non-empty string")
    if comment is not None and not isinstance(comment, str):
        raise RatingError(f"comment: must be a string or None, not {type(comment).__name__}")
    if comment is not None and len(comment) > MAX_COMMENT:
        raise RatingError(f"comment: at most {MAX_COMMENT} characters, not {len(comment)}")
    store = services.store
    if not store.rating_window_s:
        raise RatingsOff("ratings are off (RATING_WINDOW_S=0): no request is ratable")
    store.flush_pending()  # a request served during an outage is ratable once Redis is back
    try:
        credited = store.rate(request_id, quality)
    except redis.RedisError as exc:
        raise redis.RedisError("Redis did not answer; the rating was not recorded: "
                               + redact(str(exc))) from exc
    if credited is None and store.queued_request(request_id):
        raise redis.ConnectionError(
            f"request {request_id!r} was served while Redis was unreachable or refusing "
            "writes, and its record is still queued in this process; the rating was not "
            "recorded: retry when Redis answers")
    if credited is None:
        raise NotRatable(
            f"request {request_id!r} is not ratable: no served request has that id in the "
            f"last {store.rating_window_s} s (RATING_WINDOW_S); unserved requests have "
            "no answer to rate")
    who, previous = credited
    now = datetime.fromtimestamp(services.clock(), tz=timezone.utc)
    record: dict[str, Any] = {
        "timestamp": now.isoformat(), "type": "rating", "request_id": request_id,
        "model_id": who.model_id, "domain": who.domain, "task_type": who.task_type,
        "user_feedback": quality, "replaces": previous,
    }
    if comment:
        record["comment"] = redact(comment)
    services.feedback.append(record)
    return record
