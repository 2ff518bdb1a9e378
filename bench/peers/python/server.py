"""sse-starlette on uvicorn: a peer in Herald's side-by-side benchmark.

GET /events?topic=T  streams `data: ...` frames; each subscriber has its own asyncio.Queue.
POST /publish        JSON {topic, data}: puts the data on the queue of every subscriber of T.

Usage: python server.py --port 8084 (listens on 127.0.0.1 only).
"""

import argparse
import asyncio

import uvicorn
from sse_starlette.sse import EventSourceResponse
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

# topic -> the queues of its subscribers
topics: dict[str, set[asyncio.Queue]] = {}


async def healthz(_request: Request):
    return PlainTextResponse("ok")


async def events(request: Request):
    topic = request.query_params.get("topic", "")
    queue: asyncio.Queue = asyncio.Queue()
    topics.setdefault(topic, set()).add(queue)

    async def stream():
        try:
            while True:
                data = await queue.get()
                yield {"data": data}
        finally:
            subs = topics.get(topic)
            if subs is not None:
                subs.discard(queue)
                if not subs:
                    topics.pop(topic, None)

    # ping=0 would disable nothing in some versions; a long ping keeps it out of the way.
    return EventSourceResponse(stream(), ping=3600)


async def publish(request: Request):
    body = await request.json()
    topic, data = body.get("topic"), body.get("data")
    if not isinstance(topic, str) or not isinstance(data, str):
        return JSONResponse({"error": "topic and data must be strings"}, status_code=400)
    subs = topics.get(topic, ())
    for queue in subs:
        queue.put_nowait(data)
    return JSONResponse({"delivered": len(subs)})


app = Starlette(
    routes=[
        Route("/healthz", healthz),
        Route("/events", events),
        Route("/publish", publish, methods=["POST"]),
    ]
)

if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=8084)
    args = parser.parse_args()
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", backlog=4096)
