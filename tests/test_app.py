"""The Gradio app: honest when no pipeline is registered, one tab per pipeline otherwise, and bad
input shown as a gr.Error. One test serves it over HTTP and drives a tab through gradio_client."""

import socket

import gradio as gr
import pytest
from conftest import TASK

import app
from multimodal.errors import InputError
from multimodal.app import common as app_common
from multimodal.app import gradio_errors


def components(demo, kind):
    return [b for b in demo.blocks.values() if isinstance(b, kind)]


def test_no_pipelines_says_so(empty_registry):
    demo = app.build()
    assert isinstance(demo, gr.Blocks)
    texts = [m.value for m in components(demo, gr.Markdown)]
    assert any(t.startswith("**No pipelines are available yet**") for t in texts)
    assert not components(demo, gr.Tab)


def test_a_registered_pipeline_gets_its_tab(tiny_pipeline):
    demo = app.build()
    tabs = components(demo, gr.Tab)
    assert [t.label for t in tabs] == [TASK]
    assert [n.label for n in components(demo, gr.Number)] == ["a", "b"]
    assert not any("No pipelines" in m.value for m in components(demo, gr.Markdown))


def test_a_pipeline_without_a_tab_gets_none(empty_registry):
    from conftest import LinearPipeline
    from multimodal import pipelines

    pipelines.register_pipeline(TASK, LinearPipeline)
    demo = app.build()
    assert not components(demo, gr.Tab)
    assert any(f"({TASK}) have no app tab" in m.value for m in components(demo, gr.Markdown))


def test_gradio_errors_turns_input_errors_into_gr_error():
    @gradio_errors
    def handler(x):
        """docstring kept"""
        if x < 0:
            raise InputError(f"x: expected >= 0, found {x}")
        if x == 0:
            raise ZeroDivisionError("not an input error")
        return 1 / x

    assert handler(4) == 0.25
    assert handler.__doc__ == "docstring kept" and handler.__wrapped__
    with pytest.raises(gr.Error, match="x: expected >= 0, found -1"):
        handler(-1)
    with pytest.raises(ZeroDivisionError):
        handler(0)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_served_app_runs_the_pipeline_and_shows_input_errors(tiny_pipeline):
    from gradio_client import Client
    from gradio_client.exceptions import AppError

    demo = app.build()
    demo.launch(server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True, quiet=True)
    try:
        client = Client(demo.local_url, verbose=False)
        assert client.predict(1, 1, api_name="/apply") == "[3.5, 6.5]"
        with pytest.raises(AppError, match="x: expected a list of two numbers"):
            client.predict(1, None, api_name="/apply")
    finally:
        demo.close()


def test_user_messages_name_the_users_file_and_log_one_line(caplog):
    from multimodal.app.common import user_message

    upload = "/tmp/gradio/3f2a9c/My Talk.wav"
    assert user_message(f"{upload}: expected a readable audio file, found [Errno 13] Permission denied",
                        upload, 5) == "My Talk.wav: expected a readable audio file, found Permission denied"

    @gradio_errors
    def handler(path):
        raise InputError(f"{path}: expected an audio file,\nfound noise")

    with caplog.at_level("WARNING", logger="multimodal.app"), pytest.raises(gr.Error) as info:
        handler(upload)
    assert info.value.message == "My Talk.wav: expected an audio file, found noise"
    assert [r.getMessage() for r in caplog.records] == ["handler: My Talk.wav: expected an audio file, found noise"]
    assert caplog.records[0].exc_info is None


def test_request_folders_are_removed(monkeypatch):
    from multimodal.app import common

    first = common.request_folder()
    (first / "a.srt").write_text("1")
    monkeypatch.setattr(common, "REQUEST_FOLDER_TTL", -1)
    second = common.request_folder()  # makes the next one, removing the expired
    assert not first.exists() and second.is_dir()
    common._remove_request_folders()  # what happens at exit
    assert not second.exists()


def test_the_real_app_answers_bad_uploads_with_the_projects_message(tmp_path):
    """Served over HTTP: a broken image and a broken recording reach our checks (not Gradio's
    decoding) and come back naming the user's file, never the server's copy."""
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError

    demo = app.build()
    demo.launch(server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True, quiet=True,
                max_file_size=app_common.MAX_FILE_SIZE)
    try:
        client = Client(demo.local_url, verbose=False)
        broken = tmp_path / "holiday.png"
        broken.write_bytes(b"\x89PNG\r\n\x1a\n not really")
        with pytest.raises(AppError, match=r"^holiday.png: expected a readable image"):
            client.predict(handle_file(str(broken)), 5, "none", api_name="/classify")
        noise = tmp_path / "talk.wav"
        noise.write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(64))
        with pytest.raises(AppError, match=r"^talk.wav: expected an audio file") as info:
            client.predict(handle_file(str(noise)), 1, True, "none", api_name="/transcribe")
        assert "/tmp" not in str(info.value) and "Errno" not in str(info.value)
    finally:
        demo.close()


def test_a_request_past_its_time_limit_is_stopped_with_a_message(monkeypatch):
    """The tabs run each request under ``TIME_LIMITS``: a generation that outlasts it stops at its
    next step, and the user reads why and what to ask for instead."""
    from multimodal.app import text_to_image

    monkeypatch.setitem(app_common.TIME_LIMITS, "text-to-image", 0)
    handler = gradio_errors(text_to_image.generate_for_tab)
    with pytest.raises(gr.Error, match=r"time limit: this request was stopped after 0 s, its limit; "
                                       r"ask for fewer images or steps"):
        handler("a red circle on a white background", "SiT", "default", 5, 4.0, False, 0, 1, 1.0, 0, 1.0, None)
    monkeypatch.setitem(app_common.TIME_LIMITS, "text-to-image", 120)
    images, _, _ = handler("a red circle on a white background", "SiT", "default", 2, 4.0, False, 0, 1, 1.0, 0, 1.0,
                           None)
    assert len(images) == 1
