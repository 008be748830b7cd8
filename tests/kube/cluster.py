#!/usr/bin/env python3
"""A Kubernetes cluster stand-in for tests: an API server (kmock's emulator with a real server's
semantics), a scheduler, a kubelet that runs containers as local processes, and a garbage
collector. See README.md next to this file.

    cluster.py --port 0 --nodes 'node-a:cpu=4,memory=16Gi;node-b:cpu=8,gpu=2' [--volcano]

prints `READY http://127.0.0.1:<port>` on stdout once it serves."""

import argparse
import asyncio
import logging
import os
import random
import shutil
import signal
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import aiohttp.web  # noqa: E402

from standin import resources  # noqa: E402
from standin.control import Control  # noqa: E402
from standin.controllers import Controllers  # noqa: E402
from standin.events import Recorder  # noqa: E402
from standin.kubelet import Kubelet  # noqa: E402
from standin.nodes import NodeController, parse_spec  # noqa: E402
from standin.scheduler import Scheduler  # noqa: E402
from standin.server import ApiServer  # noqa: E402
from standin.store import Store  # noqa: E402

log = logging.getLogger('standin')

SYSTEM_NAMESPACES = ['default', 'kube-system', 'kube-public', 'kube-node-lease']


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--host', default='127.0.0.1', help='address to serve the API on')
    parser.add_argument('--port', type=int, default=0, help='port to serve the API on (0: any free one)')
    parser.add_argument('--nodes', default='node-0:cpu=4,memory=16Gi',
                        help="node spec: 'name:cpu=4,memory=16Gi,pods=110,gpu=0,storage=100Gi,"
                             "labels=k=v+k2=v2,taints=k=v:NoSchedule,unschedulable=true;name2:…'")
    parser.add_argument('--namespaces', default='',
                        help='comma-separated namespaces to create besides the system ones')
    parser.add_argument('--volcano', action='store_true',
                        help='serve scheduling.volcano.sh and gang-schedule pods of schedulerName volcano')
    parser.add_argument('--bin-dir', action='append', default=[],
                        help='where containers\' executables are looked up first (repeatable)')
    parser.add_argument('--state-dir', default=None,
                        help='pods\' working directories, logs and volumes (default: a temporary one)')
    parser.add_argument('--fail-pull', '--fake-kubelet-image', dest='fail_pull', action='append', default=[],
                        metavar='PREFIX', help='images starting with PREFIX fail to pull (repeatable)')
    parser.add_argument('--probe-period-cap', type=float, default=1.0,
                        help='probes run at least this often (seconds), whatever their periodSeconds')
    parser.add_argument('--kubernetes-version', default='1.33',
                        help='the schemas objects are checked against')
    parser.add_argument('--log-level', default=os.environ.get('XIJI_KUBE_LOG', 'WARNING'))
    return parser.parse_args(argv)


async def main(argv):
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format='%(asctime)s %(name)s %(levelname)s %(message)s')
    own_state_dir = args.state_dir is None
    state_dir = args.state_dir or tempfile.mkdtemp(prefix='kube-standin-')
    os.makedirs(state_dir, exist_ok=True)

    api = ApiServer()
    index = resources.load(api.resources, volcano=args.volcano)
    store = Store(index, k8s_version=args.kubernetes_version)
    api.store = store

    namespaces = store.res('', 'v1', 'namespaces')
    for name in SYSTEM_NAMESPACES + [n for n in args.namespaces.split(',') if n]:
        store.create(namespaces, None, {'metadata': {'name': name}})
    store.create(store.res('', 'v1', 'services'), 'default', {
        'metadata': {'name': 'kubernetes', 'labels': {'component': 'apiserver', 'provider': 'kubernetes'}},
        'spec': {'ports': [{'name': 'https', 'port': 443, 'targetPort': 6443}], 'clusterIP': '10.96.0.1'}})
    if args.volcano:
        store.create(store.res('scheduling.volcano.sh', 'v1beta1', 'queues'), None, {
            'metadata': {'name': 'default'}, 'spec': {'weight': 1, 'reclaimable': True}})

    descs = parse_spec(args.nodes)
    if len(descs) > 200:
        raise SystemExit('at most 200 nodes')
    base = (random.randrange(16, 255), random.randrange(0, 255 - len(descs)))
    node_controller = NodeController(store, descs, base)
    node_controller.register()

    server = aiohttp.web.Server(api, handler_cancellation=True)
    loop = asyncio.get_running_loop()
    listener = await loop.create_server(server, args.host, args.port, reuse_address=True)
    port = listener.sockets[0].getsockname()[1]
    url = f'http://{args.host}:{port}'

    recorder = Recorder(store)
    scheduler = Scheduler(store, recorder, volcano=args.volcano)
    bin_dirs = [os.path.abspath(d) for d in args.bin_dir]
    kubelet = Kubelet(store, recorder, scheduler, state_dir, bin_dirs, args.fail_pull, url,
                      probe_period_cap=args.probe_period_cap)
    api.kubelet = kubelet
    controllers = Controllers(store)
    api.control = Control(store, kubelet, node_controller, scheduler)

    tasks = [
        asyncio.ensure_future(scheduler.run()),
        asyncio.ensure_future(controllers.run()),
        asyncio.ensure_future(node_controller.renew_leases(lambda: kubelet.paused)),
    ]
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        loop.add_signal_handler(sig, stop.set)
    parent = os.getppid()

    async def watch_parent():
        # When whoever started us is gone (a test killed hard), stop with it.
        while True:
            await asyncio.sleep(0.5)
            if os.getppid() != parent:
                log.warning('parent process gone; stopping')
                stop.set()
                return

    tasks.append(asyncio.ensure_future(watch_parent()))
    print(f'READY {url}', flush=True)
    log.info('serving on %s with nodes %s; state in %s', url,
             ', '.join(d['name'] for d in node_controller.descs), state_dir)
    await stop.wait()
    await kubelet.shutdown()
    for task in tasks:
        task.cancel()
    listener.close()
    if own_state_dir:
        shutil.rmtree(state_dir, ignore_errors=True)


if __name__ == '__main__':
    asyncio.run(main(sys.argv[1:]))
