"""Starts the Gradio app (``multimodal.app``) on http://127.0.0.1:7860.

    make run                  # or: .venv/bin/python app.py
    GRADIO_SERVER_NAME=0.0.0.0 GRADIO_SERVER_PORT=8000 make run
"""

from multimodal.app import build, main

__all__ = ["build", "main"]

if __name__ == "__main__":
    main()
