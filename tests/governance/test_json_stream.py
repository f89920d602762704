"""The tolerant streaming reader: every shape, chunk boundaries, line numbers."""

from __future__ import annotations

import gzip
import json

from hypothesis import given, settings
from hypothesis import strategies as st

from warden.governance import jsonstream
from warden.governance.jsonstream import StreamItem, StreamProblem, iter_events

_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=20)),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=10,
)
_events = st.lists(
    st.dictionaries(st.text(min_size=1, max_size=6), _values, max_size=4), max_size=8
)


@settings(max_examples=60, deadline=None)
@given(events=_events, shape=st.sampled_from(["records", "array", "lines"]), compress=st.booleans())
def test_reads_back_what_was_written(tmp_path_factory, events, shape, compress):
    path = tmp_path_factory.mktemp("stream") / ("events.json.gz" if compress else "events.json")
    if shape == "records":
        text = json.dumps({"Records": events}, indent=1)
    elif shape == "array":
        text = json.dumps(events, indent=2)
    else:
        text = "".join(json.dumps(event) + "\n" for event in events)
    data = text.encode()
    path.write_bytes(gzip.compress(data) if compress else data)

    items = list(iter_events(path))

    assert [item.value for item in items if isinstance(item, StreamItem)] == events
    assert not [item for item in items if isinstance(item, StreamProblem)]


def test_events_span_chunk_boundaries(tmp_path, monkeypatch):
    monkeypatch.setattr(jsonstream, "CHUNK_CHARS", 7)
    events = [{"eventID": str(n), "text": "x" * n} for n in range(30)]
    path = tmp_path / "small-chunks.json"
    path.write_text('{"Records": [\n' + ",\n".join(json.dumps(e) for e in events) + "\n]}")
    items = list(iter_events(path))
    assert [item.value for item in items] == events
    assert [item.line for item in items] == list(range(2, 32))


def test_lines_report_their_numbers(tmp_path):
    path = tmp_path / "pipeline.jsonl"
    path.write_text('{"a": 1}\n\n{"b": 2}\n[1, 2]\n{"c": \n')
    items = list(iter_events(path))
    assert [(type(i).__name__, i.line) for i in items] == [
        ("StreamItem", 1),
        ("StreamItem", 3),
        ("StreamProblem", 4),
        ("StreamProblem", 5),
    ]
