"""Trio byte streams shared by the endpoint, the client and the stand-in.

* :mod:`transport.unix` - a connected stream socket as a trio stream that tries the
  system call first and waits only when it would block, and :func:`~transport.unix.open_unix`,
  the daemon-socket connect that retries while the listen backlog is full;
* :mod:`transport.framed` - :class:`~transport.framed.FramedStream`, albatross's
  length-prefixed frames in and out of any such stream: bounded frames (the
  :class:`core.wire.FrameDecoder`), deadlines given by the caller, errors naming the peer.

May import: the standard library, trio and :mod:`core` (the frame decoder, the message
codec, the error hierarchy).  Nothing else of ours: the endpoint, the client and the
stand-in all build on it (the layers are stated in ``pyproject.toml``).  Every call here
is on the endpoint's per-command path, so it stays lean: no cancel scope, lock or extra
checkpoint unless the caller asks for a deadline or a shared sender.
"""
