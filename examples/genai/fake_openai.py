"""A local OpenAI-compatible server for the GenAI demo and tests: chat completions and embeddings with usage counts,
since no model service can be reached from a laptop demo or a CI machine.

    python examples/genai/fake_openai.py --port 18080      # then OPENAI_BASE_URL=http://127.0.0.1:18080/v1

Answers are made up but behave like a model's where monitoring looks: prompt tokens are the prompt's words, a
short question gets a short answer ("stop"), a request to summarize or explain gets a long one that runs into
``max_tokens`` ("length"). Deterministic for a given prompt.
"""

from __future__ import annotations

import argparse
import asyncio
import threading
import time
import zlib
from typing import Any

from aiohttp import web

LONG_ANSWER_WORDS = ("summarize", "explain", "describe")


def _prompt_text(messages: list[dict[str, Any]]) -> str:
    texts = []
    for message in messages:
        content = message.get("content")
        if isinstance(content, str):
            texts.append(content)
        elif isinstance(content, list):
            texts += [part.get("text", "") for part in content if isinstance(part, dict)]
    return " ".join(texts)


def answer_tokens(prompt: str, max_tokens: int | None) -> tuple[int, str]:
    """(completion tokens, finish reason) of the made-up answer to ``prompt``."""
    seed = zlib.crc32(prompt.encode())
    wanted = 40 + seed % 80 if any(w in prompt.lower() for w in LONG_ANSWER_WORDS) else 3 + seed % 12
    if max_tokens is not None and wanted > max_tokens:
        return max_tokens, "length"
    return wanted, "stop"


async def chat_completions(request: web.Request) -> web.Response:
    body = await request.json()
    prompt = _prompt_text(body.get("messages") or [])
    tokens, finish = answer_tokens(prompt, body.get("max_tokens") or body.get("max_completion_tokens"))
    return web.json_response({
        "id": f"chatcmpl-{time.time_ns():x}", "object": "chat.completion", "created": int(time.time()),
        "model": f"{body.get('model', 'unknown')}-2026-01-01",
        "choices": [{"index": 0, "finish_reason": finish,
                     "message": {"role": "assistant", "content": " ".join(["word"] * tokens)}}],
        "usage": {"prompt_tokens": len(prompt.split()), "completion_tokens": tokens,
                  "total_tokens": len(prompt.split()) + tokens}})


async def embeddings(request: web.Request) -> web.Response:
    body = await request.json()
    inputs = body.get("input")
    inputs = inputs if isinstance(inputs, list) else [inputs]
    return web.json_response({
        "object": "list", "model": body.get("model", "unknown"),
        "data": [{"object": "embedding", "index": i, "embedding": [0.1, 0.2, 0.3]} for i in range(len(inputs))],
        "usage": {"prompt_tokens": sum(len(str(t).split()) for t in inputs),
                  "total_tokens": sum(len(str(t).split()) for t in inputs)}})


def application() -> web.Application:
    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat_completions)
    app.router.add_post("/v1/embeddings", embeddings)
    return app


def serve_in_thread(port: int, host: str = "127.0.0.1") -> threading.Thread:
    """Serve on ``host:port`` from a daemon thread (returns once listening)."""
    started = threading.Event()

    def run() -> None:
        loop = asyncio.new_event_loop()
        runner = web.AppRunner(application())
        loop.run_until_complete(runner.setup())
        loop.run_until_complete(web.TCPSite(runner, host, port).start())
        started.set()
        loop.run_forever()

    thread = threading.Thread(target=run, name="fake-openai", daemon=True)
    thread.start()
    if not started.wait(30):
        raise RuntimeError(f"the fake OpenAI server did not start on {host}:{port}")
    return thread


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=18080)
    args = parser.parse_args()
    try:
        web.run_app(application(), host=args.host, port=args.port)
    except OSError as e:  # the port is taken, or the address is not this machine's
        raise SystemExit(f"fake_openai: cannot listen on {args.host}:{args.port}: {e.strerror}") from None


if __name__ == "__main__":
    main()
