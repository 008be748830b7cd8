"""Nodes: the `--nodes` spec, the Node objects a kubelet registers, their Leases, and the node
lifecycle controller's taints when a node stops being Ready."""

import asyncio
import copy
import platform

from .resources import micro_timestamp, timestamp

KUBELET_VERSION = 'v1.33.2'
CONTAINERD = 'containerd://1.7.27'

NOT_READY_TAINT = {'key': 'node.kubernetes.io/not-ready', 'effect': 'NoSchedule'}


def parse_spec(text):
    """`node-a:cpu=4,memory=16Gi,pods=110,gpu=0;node-b:cpu=8,gpu=2,labels=k=v+k2=v2,
    taints=k=v:NoSchedule` → a list of node descriptions."""
    nodes = []
    for chunk in (text or '').split(';'):
        chunk = chunk.strip()
        if not chunk:
            continue
        name, _, settings = chunk.partition(':')
        node = {'name': name.strip(), 'cpu': '4', 'memory': '16Gi', 'pods': '110', 'gpu': 0,
                'ephemeral-storage': '100Gi', 'labels': {}, 'taints': [], 'unschedulable': False}
        for setting in settings.split(','):
            setting = setting.strip()
            if not setting:
                continue
            key, _, value = setting.partition('=')
            key = key.strip()
            if key in ('labels', 'label'):
                for pair in value.split('+'):
                    if pair:
                        k, _, v = pair.partition('=')
                        node['labels'][k] = v
            elif key in ('taints', 'taint'):
                for taint in value.split('+'):
                    if not taint:
                        continue
                    kv, _, effect = taint.rpartition(':')
                    k, _, v = kv.partition('=')
                    entry = {'key': k, 'effect': effect}
                    if v:
                        entry['value'] = v
                    node['taints'].append(entry)
            elif key == 'gpu':
                node['gpu'] = int(value)
            elif key in ('storage', 'ephemeral-storage'):
                node['ephemeral-storage'] = value
            elif key == 'unschedulable':
                node['unschedulable'] = value.lower() in ('1', 'true', 'yes')
            elif key in ('cpu', 'memory', 'pods'):
                node[key] = value
            else:
                raise ValueError(f'unknown node setting {key!r} in {chunk!r}')
        nodes.append(node)
    return nodes


def subnet(base, index):
    """Node `index`'s /24 of 127/8: `base` is this cluster's (second octet, first third octet),
    picked at random so that clusters of tests running at once get addresses of their own."""
    return f'127.{base[0]}.{base[1] + index}'


def node_object(desc, index, base):
    name = desc['name']
    capacity = {'cpu': str(desc['cpu']), 'memory': str(desc['memory']), 'pods': str(desc['pods']),
                'ephemeral-storage': str(desc['ephemeral-storage']), 'hugepages-2Mi': '0'}
    if desc['gpu']:
        capacity['nvidia.com/gpu'] = str(desc['gpu'])
    arch = {'x86_64': 'amd64', 'aarch64': 'arm64'}.get(platform.machine(), platform.machine())
    labels = {
        'kubernetes.io/hostname': name, 'kubernetes.io/os': 'linux', 'kubernetes.io/arch': arch,
        'beta.kubernetes.io/os': 'linux', 'beta.kubernetes.io/arch': arch,
    }
    if desc['gpu']:
        labels['nvidia.com/gpu.present'] = 'true'
    labels.update(desc['labels'])
    now = timestamp()
    spec = {'podCIDR': f'{subnet(base, index)}.0/24', 'podCIDRs': [f'{subnet(base, index)}.0/24']}
    if desc['taints']:
        spec['taints'] = copy.deepcopy(desc['taints'])
    if desc['unschedulable']:
        spec['unschedulable'] = True
    return {
        'apiVersion': 'v1', 'kind': 'Node',
        'metadata': {'name': name, 'labels': labels,
                     'annotations': {'node.alpha.kubernetes.io/ttl': '0',
                                     'volumes.kubernetes.io/controller-managed-attach-detach': 'true'}},
        'spec': spec,
        'status': {
            'capacity': capacity,
            'allocatable': dict(capacity),
            'conditions': [
                _condition('MemoryPressure', 'False', 'KubeletHasSufficientMemory', 'kubelet has sufficient memory available', now),
                _condition('DiskPressure', 'False', 'KubeletHasNoDiskPressure', 'kubelet has no disk pressure', now),
                _condition('PIDPressure', 'False', 'KubeletHasSufficientPID', 'kubelet has sufficient PID available', now),
                _condition('Ready', 'True', 'KubeletReady', 'kubelet is posting ready status', now),
            ],
            'addresses': [{'type': 'InternalIP', 'address': f'{subnet(base, index)}.1'},
                          {'type': 'Hostname', 'address': name}],
            'daemonEndpoints': {'kubeletEndpoint': {'Port': 10250}},
            'nodeInfo': {
                'machineID': f'{index:032x}', 'systemUUID': f'00000000-0000-0000-0000-{index:012x}',
                'bootID': f'00000000-0000-0000-0001-{index:012x}',
                'kernelVersion': platform.release(), 'osImage': 'Debian GNU/Linux 12 (bookworm)',
                'containerRuntimeVersion': CONTAINERD, 'kubeletVersion': KUBELET_VERSION,
                'kubeProxyVersion': KUBELET_VERSION, 'operatingSystem': 'linux', 'architecture': arch,
            },
            'images': [],
        },
    }


def _condition(kind, status, reason, message, now):
    return {'type': kind, 'status': status, 'reason': reason, 'message': message,
            'lastHeartbeatTime': now, 'lastTransitionTime': now}


class NodeController:
    """Registers the nodes, renews their Leases, and plays the node lifecycle controller."""

    def __init__(self, store, descs, base):
        self.store = store
        self.descs = descs
        self.base = base
        self.nodes = store.res('', 'v1', 'nodes')
        self.leases = store.res('coordination.k8s.io', 'v1', 'leases')
        self.pods = store.res('', 'v1', 'pods')

    def register(self):
        for index, desc in enumerate(self.descs):
            self.store.create(self.nodes, None, node_object(desc, index, self.base))
            now = micro_timestamp()
            self.store.create(self.leases, 'kube-node-lease', {
                'apiVersion': 'coordination.k8s.io/v1', 'kind': 'Lease',
                'metadata': {'name': desc['name'], 'namespace': 'kube-node-lease'},
                'spec': {'holderIdentity': desc['name'], 'leaseDurationSeconds': 40,
                         'renewTime': now, 'acquireTime': now}})

    async def renew_leases(self, paused):
        while True:
            await asyncio.sleep(10)
            if paused():
                continue
            for lease in list(self.store.objects[self.leases.key].values()):
                if lease['metadata'].get('namespace') != 'kube-node-lease':
                    continue
                node = self.store.objects[self.nodes.key].get((None, lease['metadata']['name']))
                if node is None or _ready(node) != 'True':
                    continue
                new = copy.deepcopy(lease)
                new['spec']['renewTime'] = micro_timestamp()
                self.store.write(self.leases, new)

    def set_ready(self, name, ready):
        node = self.store.objects[self.nodes.key].get((None, name))
        if node is None:
            return None
        new = copy.deepcopy(node)
        now = timestamp()
        for cond in new['status'].get('conditions', []):
            if cond['type'] == 'Ready':
                status = 'True' if ready else 'False'
                if cond['status'] != status:
                    cond['lastTransitionTime'] = now
                cond['status'] = status
                cond['lastHeartbeatTime'] = now
                cond['reason'] = 'KubeletReady' if ready else 'KubeletNotReady'
                cond['message'] = ('kubelet is posting ready status' if ready
                                   else 'container runtime network not ready: the test said so')
        taints = [t for t in new['spec'].get('taints') or [] if t.get('key') != NOT_READY_TAINT['key']]
        if not ready:
            taints.append(dict(NOT_READY_TAINT, timeAdded=now))
        if taints:
            new['spec']['taints'] = taints
        else:
            new['spec'].pop('taints', None)
        stored = self.store.write(self.nodes, new)
        if not ready:
            self._mark_pods_not_ready(name)
        return stored

    def _mark_pods_not_ready(self, node_name):
        """The node lifecycle controller's MarkPodsNotReady."""
        for pod in list(self.store.objects[self.pods.key].values()):
            if (pod.get('spec') or {}).get('nodeName') != node_name:
                continue
            status = copy.deepcopy(pod.get('status') or {})
            changed = False
            for cond in status.get('conditions') or []:
                if cond['type'] == 'Ready' and cond['status'] != 'False':
                    cond.update(status='False', reason='NodeNotReady',
                                message='Node is not ready', lastTransitionTime=timestamp())
                    changed = True
            if changed:
                self.store.write_status(self.pods, pod, status)


def _ready(node):
    for cond in (node.get('status') or {}).get('conditions') or []:
        if cond.get('type') == 'Ready':
            return cond.get('status')
    return 'Unknown'

