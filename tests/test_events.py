"""Events: every message type round-trips through [topic, json] and validates against the schema."""

from __future__ import annotations

import json

import jsonschema
import pytest

from vadstream.wire import events
from vadstream.wire.events import Heartbeat, ParseError, Probability, SpeechEnd, SpeechStart, Status

HEADER = dict(seq=7, topic_seq=3, stream_id="abc123", source="test.wav", wall_time_ns=1_700_000_000_123_456_789)

EXAMPLES = [
    SpeechStart(sample_index=16000, probability=0.91, decided_sample=17600, **HEADER),
    SpeechEnd(sample_index=48000, probability=0.12, decided_sample=51200, start_sample=16000,
                reason="silence", **HEADER),
    Status(sample_index=0, kind="opened", message="opened test.wav", state="quiet",
           details={"device": "x", "rate_hz": 48000}, **HEADER),
    Heartbeat(sample_index=320, state="speaking", uptime_s=1.5, published=10, dropped=2, overflows=0, **HEADER),
    Probability(sample_index=640, probability=0.5, hop_samples=320, **HEADER),
]


@pytest.fixture(scope="module")
def validator():
    return jsonschema.Draft202012Validator(events.schema())


def test_schema_is_a_valid_json_schema():
    jsonschema.Draft202012Validator.check_schema(events.schema())


@pytest.mark.parametrize("event", EXAMPLES, ids=lambda e: e.TYPE)
def test_round_trip_and_schema(event, validator):
    frames = event.to_message()
    assert frames[0] == f"vad.{event.TYPE}".encode()
    data = json.loads(frames[1])
    validator.validate(data)
    assert data["schema_version"] == 1 and data["type"] == event.TYPE
    assert (data["seq"], data["topic_seq"], data["stream_id"], data["source"]) == (7, 3, "abc123", "test.wav")
    assert data["time_s"] == event.sample_index / 16000
    assert events.parse(frames) == event
    assert type(event).from_message(frames) == event


def test_speech_end_carries_duration_and_reason(validator):
    end = EXAMPLES[1]
    data = end.to_dict()
    assert data["duration_s"] == 2.0 and data["reason"] == "silence" and data["start_sample"] == 16000
    for reason in events.END_REASONS:
        validator.validate(SpeechEnd(**{**_fields(end), "reason": reason}).to_dict())
    with pytest.raises(jsonschema.ValidationError):
        validator.validate({**data, "reason": "bored"})


def test_schema_rejects_missing_and_extra_fields(validator):
    data = EXAMPLES[0].to_dict()
    for key in ("seq", "stream_id", "wall_time_ns", "probability"):
        with pytest.raises(jsonschema.ValidationError):
            validator.validate({k: v for k, v in data.items() if k != key})
    with pytest.raises(jsonschema.ValidationError):
        validator.validate({**data, "surprise": 1})
    with pytest.raises(jsonschema.ValidationError):
        validator.validate({**data, "probability": 1.5})


@pytest.mark.parametrize("frames, words", [
    ([b"vad.speech_start"], "2 frames"),
    ([b"vad.speech_start", b"{not json"], "undecodable"),
    ([b"vad.speech_start", b"[1]"], "not a JSON object"),
    ([b"vad.x", json.dumps({"schema_version": 1, "type": "x"}).encode()], "unknown message type"),
    ([b"vad.status", json.dumps({"schema_version": 2, "type": "status"}).encode()], "schema_version 2"),
    ([b"vad.prob", EXAMPLES[0].to_message()[1]], "does not match"),
    ([b"vad.speech_start", json.dumps({"schema_version": 1, "type": "speech_start"}).encode()], "speech_start message"),
])
def test_bad_messages_raise_parse_error(frames, words):
    with pytest.raises(ParseError, match=words):
        events.parse(frames)


def test_parse_ignores_unknown_fields_for_forward_compatibility():
    data = {**EXAMPLES[4].to_dict(), "new_field": 1}
    assert events.parse([b"vad.prob", json.dumps(data).encode()]) == EXAMPLES[4]


def test_from_message_checks_the_type():
    with pytest.raises(ParseError, match="expected a speech_end"):
        SpeechEnd.from_message(EXAMPLES[0].to_message())


def _fields(event):
    return {f.name: getattr(event, f.name) for f in events.dataclasses.fields(event)}
