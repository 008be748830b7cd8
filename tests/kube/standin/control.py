"""What tests may do to the cluster besides using its API: `/_test/…` on the API server's port."""

import json
import os
import signal

import aiohttp.web

from .errors import ApiError


def _json(body, status=200):
    return aiohttp.web.Response(text=json.dumps(body), status=status, content_type='application/json')


def _bool(value):
    return str(value).lower() in ('1', 'true', 'yes')


class Control:
    def __init__(self, store, kubelet, node_controller, scheduler):
        self.store = store
        self.kubelet = kubelet
        self.nodes = node_controller
        self.scheduler = scheduler

    async def handle(self, raw):
        action = raw.path[len('/_test/'):].strip('/')
        query = raw.query
        if action == 'processes' and raw.method == 'GET':
            return _json(self.processes())
        if raw.method != 'POST':
            raise ApiError.method_not_allowed()
        if action == 'kill':
            return _json(self.kill(query.get('ns', 'default'), query['pod'], query.get('container'),
                                   query.get('signal', 'KILL')))
        if action == 'node':
            name = query['name']
            if 'ready' in query:
                if self.nodes.set_ready(name, _bool(query['ready'])) is None:
                    raise ApiError(404, 'NotFound', f'nodes "{name}" not found')
            return _json({'node': name})
        if action == 'pause-kubelet':
            self.kubelet.pause()
            return _json({'kubelet': 'paused'})
        if action == 'resume-kubelet':
            self.kubelet.resume()
            return _json({'kubelet': 'running'})
        if action == 'fail-pull':
            self.kubelet.fail_pull.append(query['prefix'])
            return _json({'failPull': self.kubelet.fail_pull})
        raise ApiError(404, 'NotFound', f'no test action {action!r}')

    def processes(self):
        out = []
        for worker in self.kubelet.workers.values():
            for container in worker.init_containers + worker.containers:
                process = container.process
                if process is not None and process.returncode is None:
                    out.append({'namespace': worker.namespace, 'pod': worker.name, 'uid': worker.uid,
                                'container': container.name, 'pid': process.pid, 'ip': worker.ip,
                                'node': worker.node})
        return out

    def kill(self, namespace, pod, container_name, signal_name):
        sig = getattr(signal, 'SIG' + signal_name.upper().removeprefix('SIG'))
        killed = []
        for worker in self.kubelet.workers.values():
            if worker.namespace != namespace or worker.name != pod:
                continue
            for container in worker.init_containers + worker.containers:
                if container_name and container.name != container_name:
                    continue
                process = container.process
                if process is not None and process.returncode is None:
                    try:
                        os.killpg(process.pid, sig)
                    except ProcessLookupError:
                        continue
                    killed.append({'container': container.name, 'pid': process.pid})
        if not killed:
            raise ApiError(404, 'NotFound', f'no running process of pod {namespace}/{pod}')
        return {'killed': killed}
