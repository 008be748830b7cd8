#!/usr/bin/env python3
"""A recording pass-through in front of a Kubernetes API server: every request is forwarded
unchanged (bodies and watch streams included) and written to a log, one JSON line per request
(method, path, query), so a test can ask whether the chart's RBAC allows what the hub did.

    api_recorder.py --upstream http://127.0.0.1:PORT --log FILE

prints `READY http://127.0.0.1:<port>` once it serves; stops on SIGTERM or when its parent goes.
"""

import argparse
import asyncio
import json
import os
import signal

import aiohttp
import aiohttp.web

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade",
              "proxy-authorization", "proxy-authenticate", "host", "content-length"}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--upstream", required=True)
    parser.add_argument("--log", required=True)
    args = parser.parse_args()
    log = open(args.log, "a", encoding="utf-8", buffering=1)
    session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, sock_read=None),
                                    auto_decompress=False)

    async def forward(request: aiohttp.web.Request) -> aiohttp.web.StreamResponse:
        log.write(json.dumps({"method": request.method, "path": request.path,
                              "query": dict(request.query)}) + "\n")
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        body = await request.read()
        async with session.request(request.method, args.upstream + request.path_qs,
                                   headers=headers, data=body or None,
                                   allow_redirects=False) as upstream:
            response = aiohttp.web.StreamResponse(status=upstream.status, headers={
                k: v for k, v in upstream.headers.items() if k.lower() not in HOP_BY_HOP})
            await response.prepare(request)
            async for chunk in upstream.content.iter_any():
                await response.write(chunk)
            await response.write_eof()
            return response

    app = aiohttp.web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_route("*", "/{tail:.*}", forward)
    runner = aiohttp.web.AppRunner(app, handle_signals=False)
    await runner.setup()
    site = aiohttp.web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # noqa: SLF001 (aiohttp has no public one)
    print(f"READY http://127.0.0.1:{port}", flush=True)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    parent = os.getppid()
    while not stop.is_set():
        if os.getppid() != parent:
            break
        try:
            await asyncio.wait_for(stop.wait(), 0.5)
        except asyncio.TimeoutError:
            pass
    await runner.cleanup()
    await session.close()


if __name__ == "__main__":
    asyncio.run(main())
