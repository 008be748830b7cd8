"""What the API server fills in and refuses per kind (defaulting, admission, immutability)."""

import copy
import itertools

from . import quantity
from .errors import ApiError

_cluster_ips = itertools.count(10)

DEFAULT_TOLERATIONS = [
    {'key': 'node.kubernetes.io/not-ready', 'operator': 'Exists', 'effect': 'NoExecute',
     'tolerationSeconds': 300},
    {'key': 'node.kubernetes.io/unreachable', 'operator': 'Exists', 'effect': 'NoExecute',
     'tolerationSeconds': 300},
]


def on_create(store, res, obj):
    kind = (res.group, res.kind)
    if kind == ('', 'Pod'):
        _pod(obj)
    elif kind == ('', 'Secret'):
        from .store import decode_secret_strings
        decode_secret_strings(obj)
        obj.setdefault('type', 'Opaque')
    elif kind == ('', 'Namespace'):
        obj.setdefault('spec', {}).setdefault('finalizers', ['kubernetes'])
        obj['status'] = {'phase': 'Active'}
        obj['metadata'].setdefault('labels', {})['kubernetes.io/metadata.name'] = obj['metadata']['name']
    elif kind == ('', 'Service'):
        _service(obj)
    elif kind == ('', 'PersistentVolumeClaim'):
        obj['status'] = {'phase': 'Pending'}
        obj.setdefault('spec', {}).setdefault('volumeMode', 'Filesystem')
    elif kind == ('', 'Node'):
        obj.setdefault('spec', {})
    elif kind == ('networking.k8s.io', 'NetworkPolicy'):
        spec = obj.setdefault('spec', {})
        if not spec.get('policyTypes'):
            spec['policyTypes'] = ['Ingress'] + (['Egress'] if spec.get('egress') else [])


def admit(store, res, obj):
    """Admission plugins that refuse: a pod's ServiceAccount must exist."""
    if (res.group, res.kind) != ('', 'Pod'):
        return
    meta = obj['metadata']
    account = (obj.get('spec') or {}).get('serviceAccountName') or \
        (obj.get('spec') or {}).get('serviceAccount') or 'default'
    accounts = store.res('', 'v1', 'serviceaccounts')
    if (meta['namespace'], account) not in store.objects[accounts.key]:
        raise ApiError.forbidden(res, meta.get('name', ''),
                                 f'error looking up service account {meta["namespace"]}/{account}: '
                                 f'serviceaccount "{account}" not found')


def after_create(store, res, obj):
    """What controllers make at once for a new object: a namespace's `default` ServiceAccount
    and `kube-root-ca.crt` (made here rather than a moment later, so no test races them)."""
    if (res.group, res.kind) != ('', 'Namespace'):
        return
    name = obj['metadata']['name']
    accounts = store.res('', 'v1', 'serviceaccounts')
    if (name, 'default') not in store.objects[accounts.key]:
        store.create(accounts, name, {'metadata': {'name': 'default'}})
    configmaps = store.res('', 'v1', 'configmaps')
    if (name, 'kube-root-ca.crt') not in store.objects[configmaps.key]:
        store.create(configmaps, name, {'metadata': {'name': 'kube-root-ca.crt'},
                                        'data': {'ca.crt': 'stand-in: no TLS\n'}})


def on_update(store, res, current, new):
    if (res.group, res.kind) == ('', 'Secret'):
        from .store import decode_secret_strings
        decode_secret_strings(new)
    if (res.group, res.kind) == ('', 'Namespace') and current['metadata'].get('deletionTimestamp'):
        new.setdefault('status', {})['phase'] = 'Terminating'


def _pod(obj):
    spec = obj.setdefault('spec', {})
    spec.setdefault('restartPolicy', 'Always')
    spec.setdefault('terminationGracePeriodSeconds', 30)
    spec.setdefault('dnsPolicy', 'ClusterFirst')
    spec.setdefault('schedulerName', 'default-scheduler')
    spec.setdefault('securityContext', {})
    spec.setdefault('serviceAccountName', spec.get('serviceAccount') or 'default')
    spec.setdefault('serviceAccount', spec['serviceAccountName'])
    spec.setdefault('enableServiceLinks', True)
    spec.setdefault('priority', 0)
    spec.setdefault('preemptionPolicy', 'PreemptLowerPriority')
    tolerations = spec.setdefault('tolerations', [])
    for default in DEFAULT_TOLERATIONS:
        if not any(t.get('key') == default['key'] and t.get('effect') in (None, '', 'NoExecute')
                   for t in tolerations):
            tolerations.append(copy.deepcopy(default))
    for container in (spec.get('containers') or []) + (spec.get('initContainers') or []):
        if not isinstance(container, dict):
            continue
        image = container.get('image') or ''
        tag = image.rsplit('/', 1)[-1]
        if 'imagePullPolicy' not in container:
            latest = '@' not in tag and (':' not in tag or tag.endswith(':latest'))
            container['imagePullPolicy'] = 'Always' if latest else 'IfNotPresent'
        container.setdefault('terminationMessagePath', '/dev/termination-log')
        container.setdefault('terminationMessagePolicy', 'File')
        resources = container.setdefault('resources', {})
        if isinstance(resources, dict) and resources.get('limits'):
            requests = resources.setdefault('requests', {})
            for name, value in resources['limits'].items():
                requests.setdefault(name, value)
        for port in container.get('ports') or []:
            if isinstance(port, dict):
                port.setdefault('protocol', 'TCP')
    obj['status'] = {'phase': 'Pending', 'qosClass': qos_class(spec)}


def qos_class(spec):
    containers = [c for c in (spec.get('containers') or []) + (spec.get('initContainers') or [])
                  if isinstance(c, dict)]
    any_set = False
    guaranteed = True
    for container in containers:
        resources = container.get('resources') or {}
        requests, limits = resources.get('requests') or {}, resources.get('limits') or {}
        if requests or limits:
            any_set = True
        for name in ('cpu', 'memory'):
            if name not in limits or requests.get(name, limits.get(name)) != limits.get(name):
                guaranteed = False
    if not any_set:
        return 'BestEffort'
    return 'Guaranteed' if guaranteed else 'Burstable'


def _service(obj):
    spec = obj.setdefault('spec', {})
    spec.setdefault('type', 'ClusterIP')
    spec.setdefault('sessionAffinity', 'None')
    if spec.get('clusterIP') != 'None':
        number = next(_cluster_ips)
        spec.setdefault('clusterIP', f'10.96.{number // 250}.{number % 250 + 1}')
    spec['clusterIPs'] = [spec['clusterIP']]
    spec.setdefault('ipFamilies', ['IPv4'])
    spec.setdefault('ipFamilyPolicy', 'SingleStack')
    spec.setdefault('internalTrafficPolicy', 'Cluster')
    for port in spec.get('ports') or []:
        if isinstance(port, dict):
            port.setdefault('protocol', 'TCP')
            if 'port' in port:
                port.setdefault('targetPort', port['port'])
    obj['status'] = {'loadBalancer': {}}


_POD_MUTABLE = ('containers[*].image, initContainers[*].image, activeDeadlineSeconds, '
                'tolerations (only additions), terminationGracePeriodSeconds')


def check_update(store, res, current, new):
    """A pod's spec may change only where Kubernetes allows it."""
    if (res.group, res.kind) != ('', 'Pod'):
        return
    old_spec = copy.deepcopy(current.get('spec') or {})
    new_spec = copy.deepcopy(new.get('spec') or {})
    for spec in (old_spec, new_spec):
        for container in (spec.get('containers') or []) + (spec.get('initContainers') or []):
            if isinstance(container, dict):
                container.pop('image', None)
        for field in ('activeDeadlineSeconds', 'tolerations', 'terminationGracePeriodSeconds',
                      'schedulingGates'):
            spec.pop(field, None)
    if old_spec.get('nodeName') and new_spec.get('nodeName') != old_spec.get('nodeName'):
        raise ApiError.invalid(res, current['metadata']['name'], [
            ('spec.nodeName', 'Forbidden: pod updates may not change fields other than ' + _POD_MUTABLE)])
    old_spec.pop('nodeName', None)
    new_spec.pop('nodeName', None)
    if old_spec != new_spec:
        raise ApiError.invalid(res, current['metadata']['name'], [
            ('spec', 'Forbidden: pod updates may not change fields other than ' + _POD_MUTABLE)])


def default_propagation(res):
    return 'Background'


def grace_period(res, obj, requested):
    """Seconds a deleted object waits for its controller (pods on a node: the kubelet)."""
    if (res.group, res.kind) != ('', 'Pod'):
        return None
    spec = obj.get('spec') or {}
    phase = (obj.get('status') or {}).get('phase')
    if not spec.get('nodeName') or phase in ('Succeeded', 'Failed'):
        return 0
    if requested is not None:
        return max(int(requested), 0)
    return int(spec.get('terminationGracePeriodSeconds', 30))


def pod_requests(pod):
    """The pod's effective requests as the scheduler counts them: the sum over containers, at
    least the largest init container, plus overhead; cpu in millicores, the rest whole units."""
    spec = pod.get('spec') or {}
    total = {}
    for container in spec.get('containers') or []:
        for name, value in ((container.get('resources') or {}).get('requests') or {}).items():
            total[name] = total.get(name, 0) + quantity.amount(name, value)
    for container in spec.get('initContainers') or []:
        for name, value in ((container.get('resources') or {}).get('requests') or {}).items():
            total[name] = max(total.get(name, 0), quantity.amount(name, value))
    for name, value in (spec.get('overhead') or {}).items():
        total[name] = total.get(name, 0) + quantity.amount(name, value)
    return total
