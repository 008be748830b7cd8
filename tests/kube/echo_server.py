#!/usr/bin/env python3
"""A container's process for the stand-in's tests: serves `GET /` on `--ip`:`--port` with what
it runs as (its address, working directory, environment and arguments) as JSON."""

import argparse
import http.server
import json
import os
import sys


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument('--ip', default='127.0.0.1')
    parser.add_argument('--port', type=int, default=8080)
    parser.add_argument('--exit-after', type=float, default=None,
                        help='exit with --exit-code after this many seconds')
    parser.add_argument('--exit-code', type=int, default=0)
    args, _ = parser.parse_known_args()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = json.dumps({
                'ip': args.ip, 'port': args.port, 'cwd': os.getcwd(), 'argv': sys.argv,
                'env': dict(os.environ), 'path': self.path,
            }).encode()
            self.send_response(200)
            self.send_header('Content-Type', 'application/json')
            self.send_header('Content-Length', str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, fmt, *fmt_args):
            sys.stdout.write('echo: ' + (fmt % fmt_args) + '\n')
            sys.stdout.flush()

    server = http.server.ThreadingHTTPServer((args.ip, args.port), Handler)
    print(f'echo: serving on {args.ip}:{args.port}', flush=True)
    if args.exit_after is not None:
        import threading

        def leave():
            print(f'echo: exiting with {args.exit_code}', flush=True)
            os._exit(args.exit_code)
        threading.Timer(args.exit_after, leave).start()
    server.serve_forever()


if __name__ == '__main__':
    main()
