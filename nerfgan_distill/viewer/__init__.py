"""An interactive viewer in the browser (`nerfgan-distill view`): orbit the camera of a teacher and
its student side by side, with the teacher's depth, their difference and each one's frame rate.

    from nerfgan_distill import teacher, viewer
    app = viewer.create_app(viewer.FrameRenderer(teacher.bundled()))
    with viewer.running(app) as url:   # a background server, e.g. in a notebook
        print(url)

The web stack is Starlette with uvicorn; the page (static/) is plain HTML and JavaScript with no
outside resources.
"""
from .frames import FrameRenderer, SpeedMeter
from .protocol import Limits, ProtocolError, View, parse_message
from .server import create_app, open_socket, running, serve, url_of

__all__ = ["FrameRenderer", "SpeedMeter", "Limits", "ProtocolError", "View", "parse_message", "create_app",
           "open_socket", "running", "serve", "url_of"]
