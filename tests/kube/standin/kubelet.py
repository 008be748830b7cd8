"""The kubelet of every node: it "pulls" the image, runs each container's command as a process on
this machine with the pod's own loopback IP, probes readiness, reports the pod's status and
events in a real kubelet's words, and stops the processes when the pod is deleted.

There is no container runtime: a container is its command, run with the host's filesystem. The
executable is looked up in `--bin-dir` first, then on PATH; `0.0.0.0` in the arguments and the
environment becomes the pod's IP; mounted volumes are directories of the pod's own (paths under
a mount in the arguments, the environment and `workingDir` are rewritten to them)."""

import asyncio
import base64
import copy
import ctypes
import hashlib
import logging
import math
import os
import re
import random
import secrets
import shutil
import signal
import socket
import time

import aiohttp
import aiohttp.web

from . import quantity
from .errors import ApiError
from .resources import timestamp

log = logging.getLogger('standin.kubelet')

_libc = ctypes.CDLL(None, use_errno=True)
_PR_SET_PDEATHSIG = 1


def _child_setup():
    """In the forked child: its own process group, killed if the stand-in dies."""
    os.setsid()
    _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def normalise_image(image):
    """`busybox` → `docker.io/library/busybox:latest`, as containerd reports images."""
    name = image
    first = name.split('/', 1)[0]
    if '/' not in name or not ('.' in first or ':' in first or first == 'localhost'):
        name = 'docker.io/' + (name if '/' in name else 'library/' + name)
    last = name.rsplit('/', 1)[-1]
    if '@' not in last and ':' not in last:
        name += ':latest'
    return name


def _digest(image):
    return 'sha256:' + hashlib.sha256(image.encode()).hexdigest()


class ContainerState:
    def __init__(self, spec, init=False):
        self.spec = spec
        self.name = spec['name']
        self.init = init
        self.image = normalise_image(spec.get('image') or '')
        self.state = {'waiting': {'reason': 'ContainerCreating'}}
        self.last_state = {}
        self.ready = False
        self.started = False
        self.restart_count = 0
        self.container_id = None
        self.process = None
        self.log_path = None
        self.probe_task = None

    def status(self):
        out = {'name': self.name, 'image': self.image, 'imageID': '', 'ready': self.ready,
               'restartCount': self.restart_count, 'started': self.started,
               'state': copy.deepcopy(self.state), 'lastState': copy.deepcopy(self.last_state)}
        if self.container_id:
            out['containerID'] = self.container_id
            out['imageID'] = f"{self.image.rsplit(':', 1)[0] if '@' not in self.image else self.image.split('@')[0]}@{_digest(self.image)}"
        out['volumeMounts'] = [
            {'name': m.get('name'), 'mountPath': m.get('mountPath'),
             **({'readOnly': True} if m.get('readOnly') else {})}
            for m in self.spec.get('volumeMounts') or []]
        if not out['volumeMounts']:
            del out['volumeMounts']
        if self.spec.get('resources'):
            out['resources'] = copy.deepcopy(self.spec['resources'])
        return out

    @property
    def running(self):
        return 'running' in self.state

    @property
    def terminated(self):
        return 'terminated' in self.state


class PodWorker:
    """One pod's life on its node."""

    def __init__(self, kubelet, pod):
        self.kubelet = kubelet
        self.store = kubelet.store
        self.namespace = pod['metadata']['namespace']
        self.name = pod['metadata']['name']
        self.uid = pod['metadata']['uid']
        self.node = pod['spec']['nodeName']
        self.changed = asyncio.Event()
        self.removed = False
        self.ip = None
        self.dir = os.path.join(kubelet.state_dir, 'pods', f'{self.namespace}_{self.name}_{self.uid[:8]}')
        spec = pod.get('spec') or {}
        self.init_containers = [ContainerState(c, init=True) for c in spec.get('initContainers') or []]
        self.containers = [ContainerState(c) for c in spec.get('containers') or []]
        self.start_time = None
        self.phase = 'Pending'
        self.sandbox_ready = False
        self.initialized = not self.init_containers
        self.message = None
        self.reason = None

    # ---- helpers ----

    def current(self):
        return self.store.objects[self.kubelet.pods.key].get((self.namespace, self.name))

    def alive(self):
        pod = self.current()
        return pod is not None and pod['metadata']['uid'] == self.uid

    def deleting(self):
        pod = self.current()
        return pod is None or pod['metadata']['uid'] != self.uid or bool(pod['metadata'].get('deletionTimestamp'))

    def event(self, reason, message, kind='Normal', container=None):
        pod = self.current()
        if pod is None:
            return
        field_path = f'spec.containers{{{container.name}}}' if container and not container.init else (
            f'spec.initContainers{{{container.name}}}' if container else None)
        self.kubelet.recorder.record(pod, reason, message, kind=kind, component='kubelet',
                                     host=self.node, field_path=field_path)

    def report(self):
        """Writes the pod's status as this kubelet sees it."""
        pod = self.current()
        if pod is None or pod['metadata']['uid'] != self.uid or self.kubelet.paused:
            return
        old = pod.get('status') or {}
        status = {'phase': self.phase, 'qosClass': old.get('qosClass', 'BestEffort')}
        node_ip = self.kubelet.node_ip(self.node)
        if node_ip:
            status['hostIP'] = node_ip
            status['hostIPs'] = [{'ip': node_ip}]
        if self.ip:
            status['podIP'] = self.ip
            status['podIPs'] = [{'ip': self.ip}]
        if self.start_time:
            status['startTime'] = self.start_time
        if self.reason:
            status['reason'] = self.reason
        if self.message:
            status['message'] = self.message
        all_ready = bool(self.containers) and all(c.ready for c in self.containers)
        unready = [c.name for c in self.containers if not c.ready]
        terminal = self.phase in ('Succeeded', 'Failed')
        conds = {
            'PodReadyToStartContainers': ('True' if self.sandbox_ready and not terminal else 'False', None, None),
            'Initialized': ('True', None, None) if self.initialized else (
                'False', 'ContainersNotInitialized',
                f'containers with incomplete status: [{" ".join(c.name for c in self.init_containers if not c.terminated)}]'),
            'Ready': ('True', None, None) if all_ready else (
                'False', 'PodCompleted' if self.phase == 'Succeeded' else 'PodFailed' if self.phase == 'Failed' else 'ContainersNotReady',
                None if terminal else f'containers with unready status: [{" ".join(unready)}]'),
            'ContainersReady': ('True', None, None) if all_ready else (
                'False', 'PodCompleted' if self.phase == 'Succeeded' else 'PodFailed' if self.phase == 'Failed' else 'ContainersNotReady',
                None if terminal else f'containers with unready status: [{" ".join(unready)}]'),
        }
        previous = {c.get('type'): c for c in old.get('conditions') or []}
        node = self.store.objects[self.kubelet.nodes.key].get((None, self.node))
        if node is not None and not _node_ready(node):
            conds['Ready'] = ('False', 'NodeNotReady', 'Node is not ready')
        conditions = []
        now = timestamp()
        for kind, (value, reason, message) in conds.items():
            before = previous.get(kind) or {}
            cond = {'type': kind, 'status': value, 'lastProbeTime': None,
                    'lastTransitionTime': before.get('lastTransitionTime', now) if before.get('status') == value else now}
            if reason:
                cond['reason'] = reason
            if message:
                cond['message'] = message
            conditions.append(cond)
        conditions.append(previous.get('PodScheduled') or {'type': 'PodScheduled', 'status': 'True',
                                                           'lastProbeTime': None, 'lastTransitionTime': now})
        status['conditions'] = conditions
        if self.init_containers:
            status['initContainerStatuses'] = [c.status() for c in self.init_containers]
        status['containerStatuses'] = [c.status() for c in self.containers]
        self.store.write_status(self.kubelet.pods, pod, status)

    async def gate(self):
        await self.kubelet.unpaused.wait()

    async def sleep(self, seconds):
        """Sleeps, waking early when the pod changes; True when it is being deleted."""
        self.changed.clear()
        if self.deleting():
            return True
        try:
            await asyncio.wait_for(self.changed.wait(), timeout=seconds)
        except asyncio.TimeoutError:
            pass
        return self.deleting()

    # ---- the life ----

    async def run(self):
        try:
            await self._live()
        except asyncio.CancelledError:
            raise
        except Exception as e:
            # A bug of the stand-in, shown where a test looks: the pod's events and its log.
            log.exception('pod %s/%s: the kubelet failed', self.namespace, self.name)
            self.event('Failed', f'Error: the stand-in kubelet failed: {e!r}', kind='Warning')
        finally:
            await self._kill_all(grace=2)
            self.kubelet.forget(self)

    async def _live(self):
        await self.gate()
        if self.deleting():
            await self._finish_deletion()
            return
        os.makedirs(self.dir, exist_ok=True)
        self.start_time = timestamp()
        ports = [p['containerPort'] for c in self.init_containers + self.containers
                 for p in c.spec.get('ports') or [] if p.get('containerPort') and p.get('protocol', 'TCP') == 'TCP']
        self.ip = self.kubelet.allocate_ip(self.node, self.uid, ports)
        self.sandbox_ready = True
        self.report()
        if not await self._prepare_volumes():
            await self._finish_deletion()
            return
        for container in self.init_containers:
            if not await self._pull(container):
                await self._finish_deletion()
                return
            if not await self._start(container):
                break
            code = await self._wait_exit(container)
            if code is None:
                break
            if code != 0:
                self.phase = 'Failed'
                self.report()
                break
        else:
            self.initialized = True
            self.report()
            for container in self.containers:
                if not await self._pull(container):
                    await self._finish_deletion()
                    return
                await self._start(container)
            if self.phase == 'Pending' and any(c.running for c in self.containers):
                self.phase = 'Running'
            self._settle_phase()
            self.report()
            await self._supervise()
        await self._finish_deletion()

    def _settle_phase(self):
        policy = (self.current() or {}).get('spec', {}).get('restartPolicy', 'Always')
        if not self.containers:
            return
        if all(c.terminated for c in self.containers):
            codes = [c.state['terminated'].get('exitCode', 1) for c in self.containers]
            if policy == 'Never' or (policy == 'OnFailure' and all(code == 0 for code in codes)):
                self.phase = 'Succeeded' if all(code == 0 for code in codes) else 'Failed'

    async def _supervise(self):
        """Until the pod is deleted: restarts per restartPolicy, readiness, exits."""
        while not self.deleting():
            if self.phase in ('Succeeded', 'Failed'):
                for container in self.containers:
                    container.ready = False
                self.report()
                await self.sleep(3600)
                continue
            waits = [asyncio.ensure_future(self.changed.wait())]
            for container in self.containers:
                if container.process is not None and container.running:
                    waits.append(asyncio.ensure_future(container.process.wait()))
            self.changed.clear()
            if self.deleting():
                for w in waits:
                    w.cancel()
                break
            done, pending = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED, timeout=5)
            for w in pending:
                w.cancel()
            await self.gate()
            for container in self.containers:
                if container.process is not None and container.running and container.process.returncode is not None:
                    self._exited(container, container.process.returncode)
            self._settle_phase()
            self.report()
            policy = (self.current() or {}).get('spec', {}).get('restartPolicy', 'Always')
            for container in self.containers:
                if container.terminated and self.phase == 'Running':
                    code = container.state['terminated'].get('exitCode', 1)
                    if policy == 'Always' or (policy == 'OnFailure' and code != 0):
                        asyncio.ensure_future(self._restart_later(container))

    async def _restart_later(self, container):
        if getattr(container, 'restarting', False):
            return
        container.restarting = True
        try:
            delay = min(10 * 2 ** container.restart_count, 300)
            container.last_state = {'terminated': container.state['terminated']}
            container.restart_count += 1
            container.state = {'waiting': {'reason': 'CrashLoopBackOff', 'message':
                               f'back-off {delay}s restarting failed container={container.name} pod={self.name}_{self.namespace}({self.uid})'}}
            self.event('BackOff', f'Back-off restarting failed container {container.name} in pod {self.name}_{self.namespace}({self.uid})',
                       kind='Warning', container=container)
            self.report()
            if await self.sleep(delay):
                return
            await self.gate()
            await self._start(container)
            self.report()
            self.changed.set()
        finally:
            container.restarting = False

    # ---- volumes ----

    async def _prepare_volumes(self):
        """Materialises the pod's volumes as directories; retries while a Secret or ConfigMap
        is missing (FailedMount). False when the pod is deleted meanwhile."""
        while True:
            await self.gate()
            pod = self.current()
            if pod is None or self.deleting():
                return False
            try:
                self.mounts = self.kubelet.volumes.prepare(pod, self.dir)
                return True
            except VolumeMissing as e:
                self.event('FailedMount', str(e), kind='Warning')
                if await self.sleep(2):
                    return False

    # ---- image ----

    async def _pull(self, container):
        image = container.spec.get('image') or ''
        backoff = 10
        while True:
            await self.gate()
            if self.deleting():
                return False
            failing = any(image.startswith(prefix) for prefix in self.kubelet.fail_pull)
            present = (self.node, image) in self.kubelet.pulled and \
                container.spec.get('imagePullPolicy') in ('IfNotPresent', 'Never')
            if present:
                self.event('Pulled', f'Container image "{image}" already present on machine', container=container)
                return True
            if container.spec.get('imagePullPolicy') == 'Never':
                if failing:
                    message = f'Container image "{image}" is not present with pull policy of Never'
                    container.state = {'waiting': {'reason': 'ErrImageNeverPull', 'message': message}}
                    self.event('ErrImageNeverPull', message, kind='Warning', container=container)
                    self.report()
                    if await self.sleep(backoff):
                        return False
                    continue
                self.kubelet.pulled.add((self.node, image))
                self.event('Pulled', f'Container image "{image}" already present on machine', container=container)
                return True
            self.event('Pulling', f'Pulling image "{image}"', container=container)
            started = time.monotonic()
            await asyncio.sleep(self.kubelet.pull_seconds)
            if failing:
                reason = (f'failed to pull and unpack image "{normalise_image(image)}": failed to resolve reference '
                          f'"{normalise_image(image)}": {normalise_image(image)}: not found')
                message = f'rpc error: code = NotFound desc = {reason}'
                self.event('Failed', f'Failed to pull image "{image}": {message}', kind='Warning', container=container)
                self.event('Failed', 'Error: ErrImagePull', kind='Warning', container=container)
                container.state = {'waiting': {'reason': 'ErrImagePull', 'message': message}}
                self.report()
                if await self.sleep(1):
                    return False
                self.event('BackOff', f'Back-off pulling image "{image}"', kind='Normal', container=container)
                self.event('Failed', 'Error: ImagePullBackOff', kind='Warning', container=container)
                container.state = {'waiting': {'reason': 'ImagePullBackOff', 'message':
                                               f'Back-off pulling image "{image}": ErrImagePull: {message}'}}
                self.report()
                if await self.sleep(backoff):
                    return False
                backoff = min(backoff * 2, 300)
                continue
            took = time.monotonic() - started
            size = int(hashlib.sha256(image.encode()).hexdigest()[:6], 16) * 100
            self.event('Pulled', f'Successfully pulled image "{image}" in {took * 1000:.0f}ms '
                                 f'({took * 1000:.0f}ms including waiting). Image size: {size} bytes.',
                       container=container)
            self.kubelet.pulled.add((self.node, image))
            return True

    # ---- processes ----

    async def _start(self, container):
        """Starts the container's process; False when it could not start (the container is then
        terminated with StartError, or the pod is being deleted)."""
        while True:
            await self.gate()
            if self.deleting():
                return False
            pod = self.current()
            try:
                env = self.kubelet.environment(pod, container.spec, self.ip, self.mounts)
                break
            except ConfigMissing as e:
                container.state = {'waiting': {'reason': 'CreateContainerConfigError', 'message': str(e)}}
                self.event('Failed', f'Error: {e}', kind='Warning', container=container)
                self.report()
                if await self.sleep(2):
                    return False
        argv = self.kubelet.command_line(container.spec, env, self.ip, self.mounts)
        container.container_id = 'containerd://' + secrets.token_hex(32)
        self.event('Created', f'Created container: {container.name}', container=container)
        if not argv:
            return self._start_error(container, 'failed to create containerd task: failed to create shim task: OCI runtime create failed: runc create failed: unable to start container process: no command specified (the stand-in runs a container\'s command; an image\'s entrypoint is unknown to it): unknown')
        executable = self.kubelet.find_executable(argv[0], env.get('PATH'))
        if executable is None:
            return self._start_error(container, f'failed to create containerd task: failed to create shim task: OCI runtime create failed: runc create failed: unable to start container process: error during container init: exec: "{argv[0]}": executable file not found in $PATH: unknown')
        workdir = self.kubelet.working_dir(container.spec, self.dir, self.mounts)
        container.log_path = os.path.join(self.dir, f'{container.name}.log')
        logfile = open(container.log_path, 'ab')
        try:
            container.process = await asyncio.create_subprocess_exec(
                executable, *argv[1:], cwd=workdir, env=env, stdin=asyncio.subprocess.DEVNULL,
                stdout=logfile, stderr=asyncio.subprocess.STDOUT, preexec_fn=_child_setup)
        except OSError as e:
            return self._start_error(container, f'failed to create containerd task: failed to create shim task: OCI runtime create failed: runc create failed: unable to start container process: exec: "{argv[0]}": {e.strerror}: unknown')
        finally:
            logfile.close()
        log.info('pod %s/%s container %s: pid %s on %s: %s', self.namespace, self.name, container.name,
                 container.process.pid, self.ip, ' '.join(argv))
        container.state = {'running': {'startedAt': timestamp()}}
        container.started = not container.spec.get('startupProbe')
        container.ready = False
        self.event('Started', f'Started container {container.name}', container=container)
        if not container.init:
            container.probe_task = asyncio.ensure_future(self._probe(container))
        return True

    def _start_error(self, container, message):
        self.event('Failed', f'Error: {message}', kind='Warning', container=container)
        now = timestamp()
        container.state = {'terminated': {'exitCode': 128, 'reason': 'StartError', 'message': message,
                                          'startedAt': '1970-01-01T00:00:00Z', 'finishedAt': now,
                                          'containerID': container.container_id}}
        self.report()
        return False

    def _exited(self, container, code):
        if container.probe_task:
            container.probe_task.cancel()
            container.probe_task = None
        signal_number = -code if code < 0 else None
        exit_code = 128 + signal_number if signal_number else code
        started = container.state.get('running', {}).get('startedAt', timestamp())
        container.state = {'terminated': {
            'exitCode': exit_code, 'reason': 'Completed' if exit_code == 0 else 'Error',
            'startedAt': started, 'finishedAt': timestamp(), 'containerID': container.container_id}}
        if signal_number:
            container.state['terminated']['signal'] = signal_number
        container.ready = False
        container.started = False
        log.info('pod %s/%s container %s exited with %s', self.namespace, self.name, container.name, exit_code)

    async def _wait_exit(self, container):
        while container.process.returncode is None:
            waiter = asyncio.ensure_future(container.process.wait())
            changed = asyncio.ensure_future(self.changed.wait())
            self.changed.clear()
            await asyncio.wait([waiter, changed], return_when=asyncio.FIRST_COMPLETED)
            changed.cancel()
            if self.deleting():
                waiter.cancel()
                return None
        await self.gate()
        self._exited(container, container.process.returncode)
        self.report()
        return container.state['terminated']['exitCode']

    async def _probe(self, container):
        """Readiness: the container's readinessProbe (and startupProbe first), else a TCP connect
        to its first declared port, else ready once running; liveness alongside."""
        spec = container.spec
        cap = self.kubelet.probe_period_cap
        startup = spec.get('startupProbe')
        if startup:
            await self._probe_until(container, startup, cap, 'Startup')
            container.started = True
            self.report()
        if spec.get('livenessProbe'):
            asyncio.ensure_future(self._liveness(container, spec['livenessProbe'], cap))
        probe = spec.get('readinessProbe')
        declared = probe is not None
        if probe is None:
            ports = [p for p in spec.get('ports') or [] if p.get('containerPort')]
            if ports:
                probe = {'tcpSocket': {'port': ports[0]['containerPort']}, 'periodSeconds': 1}
        if probe is None:
            await self.gate()
            container.ready = True
            self.report()
            return
        await asyncio.sleep(min(float(probe.get('initialDelaySeconds', 0)), 30))
        period = min(float(probe.get('periodSeconds', 10)), cap)
        failures_to_unready = int(probe.get('failureThreshold', 3))
        failures = 0
        while container.running:
            ok, detail = await self._probe_once(container, probe)
            await self.gate()
            if not container.running:
                return
            if ok:
                failures = 0
                if not container.ready:
                    container.ready = True
                    self.report()
            else:
                failures += 1
                if declared:
                    self.event('Unhealthy', f'Readiness probe failed: {detail}', kind='Warning', container=container)
                if container.ready and failures >= failures_to_unready:
                    container.ready = False
                    self.report()
            await asyncio.sleep(period)

    async def _probe_until(self, container, probe, cap, kind):
        await asyncio.sleep(min(float(probe.get('initialDelaySeconds', 0)), 30))
        period = min(float(probe.get('periodSeconds', 10)), cap)
        while container.running:
            ok, detail = await self._probe_once(container, probe)
            if ok:
                return
            self.event('Unhealthy', f'{kind} probe failed: {detail}', kind='Warning', container=container)
            await asyncio.sleep(period)

    async def _liveness(self, container, probe, cap):
        """A container failing its liveness probe `failureThreshold` times is killed (then
        restarted or not by the pod's restartPolicy)."""
        process = container.process
        await asyncio.sleep(min(float(probe.get('initialDelaySeconds', 0)), 30))
        period = min(float(probe.get('periodSeconds', 10)), cap)
        threshold = int(probe.get('failureThreshold', 3))
        failures = 0
        while container.running and container.process is process:
            ok, detail = await self._probe_once(container, probe)
            await self.gate()
            if not container.running or container.process is not process:
                return
            failures = 0 if ok else failures + 1
            if not ok:
                self.event('Unhealthy', f'Liveness probe failed: {detail}', kind='Warning', container=container)
            if failures >= threshold:
                self.event('Killing', f'Container {container.name} failed liveness probe, will be restarted',
                           container=container)
                grace = int((self.current() or {}).get('spec', {}).get('terminationGracePeriodSeconds', 30))
                _signal_group(process.pid, signal.SIGTERM)
                try:
                    await asyncio.wait_for(process.wait(), grace)
                except asyncio.TimeoutError:
                    _signal_group(process.pid, signal.SIGKILL)
                self.changed.set()
                return
            await asyncio.sleep(period)

    async def _probe_once(self, container, probe):
        """(passed, why not) in the kubelet's words."""
        timeout = float(probe.get('timeoutSeconds', 1))
        port_of = lambda port: self._port(container.spec, port)
        try:
            if 'httpGet' in probe:
                get = probe['httpGet']
                scheme = (get.get('scheme') or 'HTTP').lower()
                host = get.get('host') or self.ip
                path = get.get('path') or '/'
                headers = {h['name']: h['value'] for h in get.get('httpHeaders') or []}
                port = port_of(get.get('port'))
                url = f'{scheme}://{host}:{port}{path}'
                try:
                    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session:
                        async with session.get(url, headers=headers, ssl=False, allow_redirects=False) as response:
                            if 200 <= response.status < 400:
                                return True, ''
                            return False, f'HTTP probe failed with statuscode: {response.status}'
                except asyncio.TimeoutError:
                    return False, f'Get "{url}": context deadline exceeded (Client.Timeout exceeded while awaiting headers)'
                except (OSError, aiohttp.ClientError):
                    return False, f'Get "{url}": dial tcp {host}:{port}: connect: connection refused'
            if 'tcpSocket' in probe or 'grpc' in probe:
                target = probe.get('tcpSocket') or probe.get('grpc')
                host = target.get('host') or self.ip
                port = port_of(target.get('port'))
                try:
                    _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
                except asyncio.TimeoutError:
                    return False, f'dial tcp {host}:{port}: i/o timeout'
                except OSError:
                    return False, f'dial tcp {host}:{port}: connect: connection refused'
                writer.close()
                return True, ''
            if 'exec' in probe:
                pod = self.current()
                env = self.kubelet.environment(pod, container.spec, self.ip, self.mounts)
                argv = probe['exec'].get('command') or []
                executable = self.kubelet.find_executable(argv[0], env.get('PATH')) if argv else None
                if executable is None:
                    return False, f'exec: "{argv[0] if argv else ""}": executable file not found in $PATH'
                process = await asyncio.create_subprocess_exec(
                    executable, *argv[1:], env=env, cwd=self.kubelet.working_dir(container.spec, self.dir, self.mounts),
                    stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
                try:
                    output, _ = await asyncio.wait_for(process.communicate(), timeout)
                except asyncio.TimeoutError:
                    process.kill()
                    return False, f'command timed out after {timeout:g}s'
                if process.returncode == 0:
                    return True, ''
                return False, output.decode(errors='replace').strip()
        except (OSError, ValueError, ConfigMissing) as e:
            return False, str(e)
        return False, 'no handler in the probe'

    @staticmethod
    def _port(spec, port):
        if isinstance(port, int) or (isinstance(port, str) and port.isdigit()):
            return int(port)
        for declared in spec.get('ports') or []:
            if declared.get('name') == port:
                return int(declared['containerPort'])
        raise ValueError(f'unknown port {port!r}')

    # ---- stopping ----

    async def _finish_deletion(self):
        """Waits for the pod's deletion, stops its processes within the grace period, and
        removes the pod (what the kubelet's final delete with grace 0 does)."""
        while not self.deleting():
            await self.sleep(3600)
        await self.gate()
        pod = self.current()
        grace = 2
        if pod is not None and pod['metadata']['uid'] == self.uid:
            grace = int(pod['metadata'].get('deletionGracePeriodSeconds') or 0)
        running = [c for c in self.init_containers + self.containers if c.running]
        for container in running:
            self.event('Killing', f'Stopping container {container.name}', container=container)
        await self._kill_all(grace)
        await self.gate()
        for container in running:
            if container.process is not None and container.process.returncode is not None:
                self._exited(container, container.process.returncode)
        pod = self.current()
        if pod is not None and pod['metadata']['uid'] == self.uid:
            if self.phase not in ('Succeeded', 'Failed'):
                self.phase = 'Failed' if any(c.terminated and c.state['terminated'].get('exitCode') for c in self.containers) else 'Succeeded'
            self.sandbox_ready = False
            self.report()
            try:
                self.store.delete(self.kubelet.pods, self.namespace, self.name,
                                  {'gracePeriodSeconds': 0, 'preconditions': {'uid': self.uid}})
            except ApiError:
                pass

    async def _kill_all(self, grace):
        processes = [c.process for c in self.init_containers + self.containers
                     if c.process is not None and c.process.returncode is None]
        for container in self.init_containers + self.containers:
            if container.probe_task:
                container.probe_task.cancel()
        if not processes:
            return
        for process in processes:
            _signal_group(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + max(grace, 0)
        while time.monotonic() < deadline and any(p.returncode is None for p in processes):
            await asyncio.sleep(0.05)
        for process in processes:
            if process.returncode is None:
                _signal_group(process.pid, signal.SIGKILL)
        for process in processes:
            try:
                await asyncio.wait_for(process.wait(), 5)
            except asyncio.TimeoutError:
                pass
        # Whatever else the container started in its group goes with it.
        for process in processes:
            _signal_group(process.pid, signal.SIGKILL)


def _port_free(ip, port):
    probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind((ip, port))
        return True
    except OSError:
        return False
    finally:
        probe.close()


def _signal_group(pid, sig):
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _node_ready(node):
    for cond in (node.get('status') or {}).get('conditions') or []:
        if cond.get('type') == 'Ready':
            return cond.get('status') == 'True'
    return False


class VolumeMissing(Exception):
    pass


class ConfigMissing(Exception):
    pass


class Volumes:
    def __init__(self, kubelet):
        self.kubelet = kubelet

    def prepare(self, pod, pod_dir):
        """{mountPath: host directory} for every container's mounts (sub paths included)."""
        store = self.kubelet.store
        ns = pod['metadata']['namespace']
        dirs = {}
        for volume in (pod.get('spec') or {}).get('volumes') or []:
            name = volume['name']
            target = os.path.join(pod_dir, 'volumes', name)
            if 'hostPath' in volume:
                dirs[name] = volume['hostPath']['path']
                continue
            if 'persistentVolumeClaim' in volume:
                claim = volume['persistentVolumeClaim']['claimName']
                target = os.path.join(self.kubelet.state_dir, 'claims', ns, claim)
                os.makedirs(target, exist_ok=True)
                dirs[name] = target
                continue
            os.makedirs(target, exist_ok=True)
            dirs[name] = target
            if 'secret' in volume:
                secret = self._find(store.res('', 'v1', 'secrets'), ns, volume['secret']['secretName'])
                if secret is None:
                    if volume['secret'].get('optional'):
                        continue
                    raise VolumeMissing(f'MountVolume.SetUp failed for volume "{name}" : secret "{volume["secret"]["secretName"]}" not found')
                self._write(target, {k: base64.b64decode(v) for k, v in (secret.get('data') or {}).items()},
                            volume['secret'].get('items'))
            elif 'configMap' in volume:
                cm = self._find(store.res('', 'v1', 'configmaps'), ns, volume['configMap']['name'])
                if cm is None:
                    if volume['configMap'].get('optional'):
                        continue
                    raise VolumeMissing(f'MountVolume.SetUp failed for volume "{name}" : configmap "{volume["configMap"]["name"]}" not found')
                data = {k: v.encode() for k, v in (cm.get('data') or {}).items()}
                data.update({k: base64.b64decode(v) for k, v in (cm.get('binaryData') or {}).items()})
                self._write(target, data, volume['configMap'].get('items'))
            elif 'projected' in volume:
                for source in volume['projected'].get('sources') or []:
                    if 'secret' in source:
                        secret = self._find(store.res('', 'v1', 'secrets'), ns, source['secret']['name'])
                        if secret is None and not source['secret'].get('optional'):
                            raise VolumeMissing(f'MountVolume.SetUp failed for volume "{name}" : secret "{source["secret"]["name"]}" not found')
                        if secret is not None:
                            self._write(target, {k: base64.b64decode(v) for k, v in (secret.get('data') or {}).items()},
                                        source['secret'].get('items'))
                    elif 'configMap' in source:
                        cm = self._find(store.res('', 'v1', 'configmaps'), ns, source['configMap']['name'])
                        if cm is None and not source['configMap'].get('optional'):
                            raise VolumeMissing(f'MountVolume.SetUp failed for volume "{name}" : configmap "{source["configMap"]["name"]}" not found')
                        if cm is not None:
                            self._write(target, {k: v.encode() for k, v in (cm.get('data') or {}).items()},
                                        source['configMap'].get('items'))
                    elif 'serviceAccountToken' in source:
                        self._write(target, {source['serviceAccountToken'].get('path', 'token'): b'stand-in-token'}, None)
                    elif 'downwardAPI' in source:
                        self._downward(pod, target, source['downwardAPI'].get('items') or [])
            elif 'downwardAPI' in volume:
                self._downward(pod, target, volume['downwardAPI'].get('items') or [])
        mounts = {}
        for container in (pod['spec'].get('initContainers') or []) + (pod['spec'].get('containers') or []):
            for mount in container.get('volumeMounts') or []:
                base = dirs.get(mount.get('name'))
                if base is None:
                    continue
                host = os.path.join(base, mount['subPath']) if mount.get('subPath') else base
                # As the kubelet: a subPath that is not there yet becomes a directory; a file
                # (a Secret's or ConfigMap's key) is mounted as it is.
                if mount.get('subPath') and not os.path.exists(host):
                    os.makedirs(host, exist_ok=True)
                mounts.setdefault(container['name'], {})[mount['mountPath'].rstrip('/') or '/'] = host
        return mounts

    def _find(self, res, ns, name):
        return self.kubelet.store.objects[res.key].get((ns, name))

    @staticmethod
    def _write(target, data, items):
        if items:
            data = {item['path']: data[item['key']] for item in items if item['key'] in data}
        for path, content in data.items():
            full = os.path.join(target, path)
            os.makedirs(os.path.dirname(full), exist_ok=True)
            with open(full, 'wb') as f:
                f.write(content)

    def _downward(self, pod, target, items):
        for item in items:
            if 'fieldRef' in item:
                value = self.kubelet.field_ref(pod, item['fieldRef']['fieldPath'], None)
                self._write(target, {item['path']: value.encode()}, None)


class Kubelet:
    def __init__(self, store, recorder, scheduler, state_dir, bin_dirs, fail_pull, api_url,
                 probe_period_cap=1.0, pull_seconds=0.05):
        self.store = store
        self.recorder = recorder
        self.scheduler = scheduler
        self.state_dir = state_dir
        self.bin_dirs = bin_dirs
        self.fail_pull = list(fail_pull)
        self.api_url = api_url
        self.probe_period_cap = probe_period_cap
        self.pull_seconds = pull_seconds
        self.pods = store.res('', 'v1', 'pods')
        self.nodes = store.res('', 'v1', 'nodes')
        self.workers = {}
        self.pulled = set()
        self.ips = {}
        self.volumes = Volumes(self)
        self.paused = False
        self.unpaused = asyncio.Event()
        self.unpaused.set()
        store.listeners.append(self._on_change)

    # ---- pause (a node agent that stopped reporting) ----

    def pause(self):
        self.paused = True
        self.unpaused.clear()

    def resume(self):
        self.paused = False
        self.unpaused.set()
        for worker in self.workers.values():
            worker.changed.set()
        for pod in list(self.store.objects[self.pods.key].values()):
            self._consider(pod)

    # ---- pods arriving ----

    def _on_change(self, res, kind, old, new):
        if res.key != self.pods.key:
            return
        uid = new['metadata']['uid']
        worker = self.workers.get(uid)
        if worker is not None:
            worker.changed.set()
            return
        if kind != 'DELETED':
            self._consider(new)

    def _consider(self, pod):
        if self.paused:
            return
        node = (pod.get('spec') or {}).get('nodeName')
        uid = pod['metadata']['uid']
        if not node or uid in self.workers:
            return
        if (pod.get('status') or {}).get('phase') in ('Succeeded', 'Failed'):
            return
        if (None, node) not in self.store.objects[self.nodes.key]:
            return
        worker = PodWorker(self, pod)
        self.workers[uid] = worker
        worker.task = asyncio.ensure_future(worker.run())

    def forget(self, worker):
        self.workers.pop(worker.uid, None)
        self.ips.pop(worker.uid, None)

    async def shutdown(self):
        for worker in list(self.workers.values()):
            await worker._kill_all(grace=1)

    # ---- addresses ----

    def node_ip(self, node_name):
        node = self.store.objects[self.nodes.key].get((None, node_name))
        for address in ((node or {}).get('status') or {}).get('addresses') or []:
            if address.get('type') == 'InternalIP':
                return address.get('address')
        return None

    def allocate_ip(self, node_name, uid, ports=()):
        """A free address in the node's podCIDR (a /24 of 127/8) where the pod's ports are free
        too (another cluster of a test running at the same time may use the same range)."""
        node = self.store.objects[self.nodes.key].get((None, node_name)) or {}
        cidr = (node.get('spec') or {}).get('podCIDR') or f'127.{random.randrange(16, 255)}.{random.randrange(0, 255)}.0/24'
        prefix = '.'.join(cidr.split('/')[0].split('.')[:3])
        used = set(self.ips.values())
        first = None
        for n in range(2, 255):
            ip = f'{prefix}.{n}'
            if ip in used:
                continue
            first = first or ip
            if all(_port_free(ip, port) for port in ports):
                self.ips[uid] = ip
                return ip
        if first is None:
            raise RuntimeError(f'no pod IP left on {node_name}')
        self.ips[uid] = first
        return first

    # ---- commands and environment ----

    def find_executable(self, name, path_env):
        if '/' in name:
            if os.path.isfile(name) and os.access(name, os.X_OK):
                return name
            name = os.path.basename(name)
        for directory in self.bin_dirs + (path_env or os.environ.get('PATH', '')).split(':'):
            if not directory:
                continue
            candidate = os.path.join(directory, name)
            if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
                return candidate
        return shutil.which(name)

    def field_ref(self, pod, path, ip):
        meta = pod['metadata']
        match = re.fullmatch(r"metadata\.(labels|annotations)\['(.+)'\]", path)
        if match:
            return (meta.get(match.group(1)) or {}).get(match.group(2), '')
        status = pod.get('status') or {}
        values = {
            'metadata.name': meta['name'], 'metadata.namespace': meta.get('namespace', ''),
            'metadata.uid': meta.get('uid', ''), 'spec.nodeName': pod['spec'].get('nodeName', ''),
            'spec.serviceAccountName': pod['spec'].get('serviceAccountName', ''),
            'status.podIP': ip or status.get('podIP', ''), 'status.podIPs': ip or status.get('podIP', ''),
            'status.hostIP': self.node_ip(pod['spec'].get('nodeName')) or '',
            'status.hostIPs': self.node_ip(pod['spec'].get('nodeName')) or '',
        }
        return values.get(path, '')

    def environment(self, pod, spec, ip, mounts):
        store = self.store
        ns = pod['metadata']['namespace']
        secrets_res, configmaps_res = store.res('', 'v1', 'secrets'), store.res('', 'v1', 'configmaps')
        host, port = self.api_url.split('//', 1)[1].rsplit(':', 1)
        env = {
            'PATH': ':'.join(self.bin_dirs + [os.environ.get('PATH', '/usr/local/bin:/usr/bin:/bin')]),
            'HOSTNAME': pod['metadata']['name'],
            'HOME': os.path.join(self.state_dir, 'pods', f"{ns}_{pod['metadata']['name']}_{pod['metadata']['uid'][:8]}", 'home'),
            'LANG': 'C.UTF-8',
            'KUBERNETES_SERVICE_HOST': host, 'KUBERNETES_SERVICE_PORT': port,
            'KUBERNETES_SERVICE_PORT_HTTPS': port, 'KUBERNETES_PORT': f'tcp://{host}:{port}',
        }
        os.makedirs(env['HOME'], exist_ok=True)
        for source in spec.get('envFrom') or []:
            prefix = source.get('prefix', '')
            if 'configMapRef' in source:
                cm = store.objects[configmaps_res.key].get((ns, source['configMapRef']['name']))
                if cm is None:
                    if source['configMapRef'].get('optional'):
                        continue
                    raise ConfigMissing(f'configmap "{source["configMapRef"]["name"]}" not found')
                for k, v in (cm.get('data') or {}).items():
                    env[prefix + k] = v
            if 'secretRef' in source:
                secret = store.objects[secrets_res.key].get((ns, source['secretRef']['name']))
                if secret is None:
                    if source['secretRef'].get('optional'):
                        continue
                    raise ConfigMissing(f'secret "{source["secretRef"]["name"]}" not found')
                for k, v in (secret.get('data') or {}).items():
                    env[prefix + k] = base64.b64decode(v).decode(errors='replace')
        for var in spec.get('env') or []:
            name = var['name']
            if 'value' in var or 'valueFrom' not in var:
                env[name] = _expand(var.get('value', ''), env)
                continue
            source = var['valueFrom']
            if 'secretKeyRef' in source:
                ref = source['secretKeyRef']
                secret = store.objects[secrets_res.key].get((ns, ref['name']))
                if secret is None or ref['key'] not in (secret.get('data') or {}):
                    if ref.get('optional'):
                        continue
                    if secret is None:
                        raise ConfigMissing(f'secret "{ref["name"]}" not found')
                    raise ConfigMissing(f"couldn't find key {ref['key']} in Secret {ns}/{ref['name']}")
                env[name] = base64.b64decode(secret['data'][ref['key']]).decode(errors='replace')
            elif 'configMapKeyRef' in source:
                ref = source['configMapKeyRef']
                cm = store.objects[configmaps_res.key].get((ns, ref['name']))
                if cm is None or ref['key'] not in (cm.get('data') or {}):
                    if ref.get('optional'):
                        continue
                    if cm is None:
                        raise ConfigMissing(f'configmap "{ref["name"]}" not found')
                    raise ConfigMissing(f"couldn't find key {ref['key']} in ConfigMap {ns}/{ref['name']}")
                env[name] = cm['data'][ref['key']]
            elif 'fieldRef' in source:
                env[name] = self.field_ref(pod, source['fieldRef']['fieldPath'], ip)
            elif 'resourceFieldRef' in source:
                env[name] = _resource_field(spec, source['resourceFieldRef'], self.store, pod)
        mapped = mounts.get(spec['name'], {})
        return {k: _map_paths(v.replace('0.0.0.0', ip), mapped) for k, v in env.items()}

    def command_line(self, spec, env, ip, mounts):
        argv = [_expand(a, env) for a in (spec.get('command') or []) + (spec.get('args') or [])]
        mapped = mounts.get(spec['name'], {})
        return [_map_paths(a.replace('0.0.0.0', ip), mapped) for a in argv]

    def working_dir(self, spec, pod_dir, mounts):
        wanted = spec.get('workingDir')
        if wanted:
            mapped = _map_paths(wanted, mounts.get(spec['name'], {}))
            if os.path.isdir(mapped):
                return mapped
        work = os.path.join(pod_dir, 'work')
        os.makedirs(work, exist_ok=True)
        return work

    # ---- logs ----

    async def serve_log(self, raw, ns, name):
        pod = self.store.get(self.pods, ns, name)
        query = raw.query
        worker = self.workers.get(pod['metadata']['uid'])
        containers = [c['name'] for c in pod['spec'].get('containers') or []]
        wanted = query.get('container') or (containers[0] if len(containers) == 1 else None)
        if wanted is None:
            raise ApiError.bad_request(f'a container name must be specified for pod {name}, choose one of: [{" ".join(containers)}]')
        container = None
        if worker is not None:
            container = next((c for c in worker.init_containers + worker.containers if c.name == wanted), None)
        if container is None and wanted not in containers:
            raise ApiError.bad_request(f'container {wanted} is not valid for pod {name}')
        if container is None or container.log_path is None or not os.path.exists(container.log_path):
            state = container.state.get('waiting', {}).get('reason', 'ContainerCreating') if container else 'ContainerCreating'
            raise ApiError.bad_request(f'container "{wanted}" in pod "{name}" is waiting to start: {state}')
        with open(container.log_path, 'rb') as f:
            data = f.read()
        if query.get('tailLines'):
            lines = data.splitlines(keepends=True)
            data = b''.join(lines[-int(query['tailLines']):]) if int(query['tailLines']) > 0 else b''
        if query.get('limitBytes'):
            data = data[:int(query['limitBytes'])]
        if query.get('follow', '').lower() not in ('true', '1'):
            return aiohttp.web.Response(body=data, content_type='text/plain')
        response = aiohttp.web.StreamResponse(headers={'Content-Type': 'text/plain'})
        response.enable_chunked_encoding()
        await response.prepare(raw)
        await response.write(data)
        position = os.path.getsize(container.log_path)
        while True:
            with open(container.log_path, 'rb') as f:
                f.seek(position)
                more = f.read()
            if more:
                position += len(more)
                await response.write(more)
            elif not container.running:
                break
            await asyncio.sleep(0.2)
        await response.write_eof()
        return response


def _expand(text, env):
    """`$(VAR)` references, as Kubernetes expands them in commands and env values ($$ escapes)."""
    def repl(match):
        if match.group(0).startswith('$$'):
            return match.group(0)[1:]
        return env.get(match.group(1), match.group(0))
    return re.sub(r'\$\$\([A-Za-z_][A-Za-z0-9_]*\)|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)', repl, text)


def _map_paths(value, mounts):
    """Paths under a mount point become paths under the volume's directory on this machine."""
    if not mounts:
        return value
    for mount_path in sorted(mounts, key=len, reverse=True):
        pattern = re.compile(r'(^|(?<=[=:\s,]))' + re.escape(mount_path) + r'(?=$|[/\s:,])')
        value = pattern.sub(mounts[mount_path].replace('\\', '\\\\'), value)
    return value


def _resource_field(spec, ref, store, pod):
    resource = ref.get('resource', '')
    divisor = quantity.parse(ref.get('divisor') or '1')
    kind, _, name = resource.partition('.')
    value = ((spec.get('resources') or {}).get(kind) or {}).get(name)
    if value is None:
        node = store.objects[store.res('', 'v1', 'nodes').key].get((None, pod['spec'].get('nodeName')))
        value = ((node or {}).get('status') or {}).get('allocatable', {}).get(name, '0')
    return str(math.ceil(quantity.parse(value) / divisor))

