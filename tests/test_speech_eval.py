import json

import pytest

from multimodal.data import speech_eval
from multimodal.errors import InputError


def test_read_manifest_resolves_audio_and_names_a_bad_line(tmp_path):
    manifest = tmp_path / "eval.jsonl"
    rows = [{"audio": "audio/a.wav", "text": "four two", "source": "flite-slt"}, {"audio": "b.wav", "text": "hello"}]
    manifest.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    entries = speech_eval.read_manifest(manifest)
    assert [e["audio"] for e in entries] == [str(tmp_path / "audio" / "a.wav"), str(tmp_path / "b.wav")]
    assert [e["text"] for e in entries] == ["four two", "hello"] and entries[0]["source"] == "flite-slt"
    for bad in ('{"audio": "c.wav"}', '{"text": "no audio"}', "[1, 2]", "not json"):
        manifest.write_text(json.dumps(rows[0]) + "\n" + bad + "\n")
        with pytest.raises(InputError, match="line 2: expected a JSON object with 'audio' and 'text'"):
            speech_eval.read_manifest(manifest)
    with pytest.raises(InputError, match="manifest: expected a JSONL file, found nothing"):
        speech_eval.read_manifest(tmp_path / "missing.jsonl")
