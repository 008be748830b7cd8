"""The scheduler: binds pending pods to nodes the way kube-scheduler's default profile filters
them (NodeUnschedulable, TaintToleration, NodeAffinity, NodeResourcesFit), says why it cannot in
its own words, retries when pods or nodes change; with `--volcano`, pods of `schedulerName:
volcano` are placed per PodGroup, all of a gang or none."""

import asyncio
import copy
import logging

from . import defaults
from .errors import ApiError
from .resources import timestamp

log = logging.getLogger('standin.scheduler')

GROUP_ANNOTATION = 'scheduling.k8s.io/group-name'
_RESOURCE_ORDER = ['cpu', 'memory', 'ephemeral-storage']


class Scheduler:
    def __init__(self, store, recorder, volcano=False):
        self.store = store
        self.recorder = recorder
        self.volcano = volcano
        self.pods = store.res('', 'v1', 'pods')
        self.nodes = store.res('', 'v1', 'nodes')
        self.podgroups = store.res('scheduling.volcano.sh', 'v1beta1', 'podgroups') if volcano else None
        self.wake = asyncio.Event()
        self.wake.set()
        store.listeners.append(self._on_change)

    def _on_change(self, res, kind, old, new):
        if res.key == self.nodes.key:
            self.wake.set()
        elif self.podgroups is not None and res.key == self.podgroups.key and kind != 'MODIFIED':
            self.wake.set()
        elif self.podgroups is not None and res.key == self.podgroups.key:
            if (old or {}).get('spec') != (new or {}).get('spec'):
                self.wake.set()
        elif res.key == self.pods.key:
            if kind in ('ADDED', 'DELETED'):
                self.wake.set()
                return
            old_phase = (old.get('status') or {}).get('phase')
            new_phase = (new.get('status') or {}).get('phase')
            if old_phase != new_phase or old.get('spec') != new.get('spec') or \
                    bool(old['metadata'].get('deletionTimestamp')) != bool(new['metadata'].get('deletionTimestamp')):
                self.wake.set()

    async def run(self):
        while True:
            await self.wake.wait()
            self.wake.clear()
            try:
                self.schedule_pending()
            except Exception:
                log.exception('scheduling pass failed')
            await asyncio.sleep(0.02)

    # ---- the pass ----

    def _mine(self, pod):
        name = (pod.get('spec') or {}).get('schedulerName', 'default-scheduler')
        return name == 'default-scheduler' or (self.volcano and name == 'volcano')

    def _pending(self):
        pods = []
        for pod in self.store.objects[self.pods.key].values():
            spec = pod.get('spec') or {}
            if spec.get('nodeName') or pod['metadata'].get('deletionTimestamp'):
                continue
            if (pod.get('status') or {}).get('phase', 'Pending') != 'Pending':
                continue
            if self._mine(pod):
                pods.append(pod)
        pods.sort(key=lambda p: (-int((p.get('spec') or {}).get('priority') or 0),
                                 p['metadata'].get('creationTimestamp', ''),
                                 int(p['metadata'].get('resourceVersion', 0))))
        return pods

    def _usage(self):
        usage = {}
        for pod in self.store.objects[self.pods.key].values():
            node = (pod.get('spec') or {}).get('nodeName')
            if not node or (pod.get('status') or {}).get('phase') in ('Succeeded', 'Failed'):
                continue
            self._add_usage(usage, node, pod)
        return usage

    @staticmethod
    def _add_usage(usage, node, pod):
        used = usage.setdefault(node, {'pods': 0})
        used['pods'] += 1
        for name, value in defaults.pod_requests(pod).items():
            used[name] = used.get(name, 0) + value

    def schedule_pending(self):
        nodes = sorted(self.store.objects[self.nodes.key].values(), key=lambda n: n['metadata']['name'])
        usage = self._usage()
        gangs = {}
        for pod in self._pending():
            if (pod.get('spec') or {}).get('schedulingGates'):
                self._gated(pod)
                continue
            if (pod.get('spec') or {}).get('schedulerName') == 'volcano':
                group = (pod['metadata'].get('annotations') or {}).get(GROUP_ANNOTATION)
                gangs.setdefault((pod['metadata']['namespace'], group or f"podgroup-{pod['metadata']['uid']}"), []).append(pod)
                continue
            node, message = self._place(pod, nodes, usage)
            if node is None:
                self._unschedulable(pod, message, 'default-scheduler')
            else:
                self._add_usage(usage, node['metadata']['name'], pod)
                self._bind(pod, node['metadata']['name'], 'default-scheduler')
        for (namespace, group), pods in gangs.items():
            self._schedule_gang(namespace, group, pods, nodes, usage)

    # ---- filters ----

    def _place(self, pod, nodes, usage, wording='kube'):
        if not nodes:
            return None, 'no nodes available to schedule pods'
        feasible = []
        failures = []
        for node in nodes:
            reasons, resolvable = self._filter(pod, node, usage)
            if reasons:
                failures.append((reasons, resolvable))
            else:
                feasible.append(node)
        if feasible:
            return max(feasible, key=lambda n: (self._score(pod, n, usage), [-ord(c) for c in n['metadata']['name']])), None
        return None, self._fit_error(len(nodes), failures, wording)

    def _filter(self, pod, node, usage):
        """The first failing filter's reasons, and whether preemption could help."""
        spec = pod.get('spec') or {}
        node_spec = node.get('spec') or {}
        tolerations = spec.get('tolerations') or []
        if node_spec.get('unschedulable') and not _tolerates(
                tolerations, {'key': 'node.kubernetes.io/unschedulable', 'effect': 'NoSchedule'}):
            return ['node(s) were unschedulable'], False
        for taint in node_spec.get('taints') or []:
            if taint.get('effect') in ('NoSchedule', 'NoExecute') and not _tolerates(tolerations, taint):
                return [f"node(s) had untolerated taint {{{taint.get('key')}: {taint.get('value', '')}}}"], False
        if not _affinity_matches(spec, node):
            return ["node(s) didn't match Pod's node affinity/selector"], False
        allocatable = {}
        for name, value in ((node.get('status') or {}).get('allocatable') or {}).items():
            try:
                allocatable[name] = _amount(name, value)
            except ValueError:
                continue
        used = usage.get(node['metadata']['name'], {'pods': 0})
        reasons = []
        if used.get('pods', 0) + 1 > allocatable.get('pods', 0):
            reasons.append('Too many pods')
        requests = defaults.pod_requests(pod)
        names = [n for n in _RESOURCE_ORDER if n in requests] + sorted(n for n in requests if n not in _RESOURCE_ORDER)
        for name in names:
            wanted = requests[name]
            if wanted == 0:
                continue
            if used.get(name, 0) + wanted > allocatable.get(name, 0):
                reasons.append(f'Insufficient {name}')
        return reasons, True

    def _score(self, pod, node, usage):
        """LeastAllocated: the node with the most free cpu and memory, in shares."""
        allocatable = (node.get('status') or {}).get('allocatable') or {}
        used = usage.get(node['metadata']['name'], {})
        requests = defaults.pod_requests(pod)
        score = 0.0
        for name in ('cpu', 'memory'):
            total = _amount(name, allocatable.get(name, '0'))
            if total:
                score += (total - used.get(name, 0) - requests.get(name, 0)) / total
        return score

    @staticmethod
    def _fit_error(count, failures, wording):
        histogram = {}
        for reasons, _ in failures:
            for reason in reasons:
                histogram[reason] = histogram.get(reason, 0) + 1
        reasons = ', '.join(sorted(f'{n} {reason}' for reason, n in histogram.items()))
        if wording == 'volcano':
            return f'0/{count} nodes are unavailable: {reasons}.'
        message = f'0/{count} nodes are available: {reasons}.'
        preemption = {}
        for _, resolvable in failures:
            why = 'No preemption victims found for incoming pod' if resolvable else 'Preemption is not helpful for scheduling'
            preemption[why] = preemption.get(why, 0) + 1
        more = ', '.join(sorted(f'{n} {why}' for why, n in preemption.items()))
        return f'{message} preemption: 0/{count} nodes are available: {more}.'

    # ---- writes ----

    def _bind(self, pod, node_name, component):
        current = self.store.objects[self.pods.key].get((pod['metadata']['namespace'], pod['metadata']['name']))
        if current is None:
            return
        new = copy.deepcopy(current)
        new['spec']['nodeName'] = node_name
        status = new.setdefault('status', {})
        _set_condition(status, {'type': 'PodScheduled', 'status': 'True', 'lastProbeTime': None})
        self.store.write(self.pods, new)
        self.recorder.record(new, 'Scheduled',
                             f"Successfully assigned {new['metadata']['namespace']}/{new['metadata']['name']} to {node_name}",
                             component=component)
        log.info('bound %s/%s to %s', new['metadata']['namespace'], new['metadata']['name'], node_name)

    def bind_request(self, namespace, name, body):
        """POST pods/{name}/binding."""
        pod = self.store.get(self.pods, namespace, name)
        target = (body or {}).get('target') or {}
        node_name = target.get('name')
        if not node_name:
            raise ApiError.invalid(self.pods, name, [('target.name', 'Required value')])
        if (pod.get('spec') or {}).get('nodeName'):
            raise ApiError(409, 'Conflict', f'Operation cannot be fulfilled on pods/binding "{name}": pod {name} is already assigned to node "{pod["spec"]["nodeName"]}"')
        self._bind(pod, node_name, 'default-scheduler')
        return {'kind': 'Status', 'apiVersion': 'v1', 'metadata': {}, 'status': 'Success', 'code': 201}

    def _unschedulable(self, pod, message, component):
        status = copy.deepcopy(pod.get('status') or {})
        changed = _set_condition(status, {'type': 'PodScheduled', 'status': 'False', 'reason': 'Unschedulable',
                                          'message': message, 'lastProbeTime': None})
        if changed:
            self.store.write_status(self.pods, pod, status)
            self.recorder.record(pod, 'FailedScheduling', message, kind='Warning', component=component)
            log.info('%s/%s unschedulable: %s', pod['metadata']['namespace'], pod['metadata']['name'], message)

    def _gated(self, pod):
        status = copy.deepcopy(pod.get('status') or {})
        if _set_condition(status, {'type': 'PodScheduled', 'status': 'False', 'reason': 'SchedulingGated',
                                   'message': 'Scheduling is blocked due to non-empty scheduling gates',
                                   'lastProbeTime': None}):
            self.store.write_status(self.pods, pod, status)

    # ---- volcano gangs ----

    def _schedule_gang(self, namespace, group_name, pods, nodes, usage):
        group = self.store.objects[self.podgroups.key].get((namespace, group_name)) if self.podgroups else None
        min_member = int(((group or {}).get('spec') or {}).get('minMember') or 1)
        bound = [p for p in self.store.objects[self.pods.key].values()
                 if p['metadata'].get('namespace') == namespace
                 and (p['metadata'].get('annotations') or {}).get(GROUP_ANNOTATION) == group_name
                 and (p.get('spec') or {}).get('nodeName')
                 and (p.get('status') or {}).get('phase') not in ('Succeeded', 'Failed')]
        annotated = any((p['metadata'].get('annotations') or {}).get(GROUP_ANNOTATION) for p in pods)
        if annotated and group is None:
            for pod in pods:
                self._unschedulable(pod, f'podgroup {namespace}/{group_name} not found', 'volcano')
            return
        if len(bound) + len(pods) < min_member:
            message = (f'{len(pods)}/{len(pods) + len(bound)} tasks in gang unschedulable: pod group is not ready, '
                       f'{len(pods) + len(bound)} Pending, {min_member} minAvailable')
            for pod in pods:
                self._unschedulable(pod, message, 'volcano')
            self._group_status(group, 'Pending', message, len(bound))
            return
        trial = copy.deepcopy(usage)
        placements = []
        for pod in pods:
            node, message = self._place(pod, nodes, trial, wording='volcano')
            if node is None:
                gang = (f'{len(pods)}/{len(pods) + len(bound)} tasks in gang unschedulable: pod group is not ready, '
                        f'{len(pods) + len(bound)} Pending, {min_member} minAvailable; Pending: '
                        f'{len(pods)} Unschedulable')
                for waiting in pods:
                    self._unschedulable(waiting, message, 'volcano')
                self._group_status(group, 'Pending', gang, len(bound))
                if group is not None:
                    self.recorder.record(group, 'Unschedulable', gang, kind='Warning', component='volcano')
                return
            self._add_usage(trial, node['metadata']['name'], pod)
            placements.append((pod, node['metadata']['name']))
        for pod, node_name in placements:
            self._add_usage(usage, node_name, pod)
            self._bind(pod, node_name, 'volcano')
        self._group_status(group, 'Running' if len(bound) + len(placements) >= min_member else 'Inqueue',
                           None, len(bound) + len(placements))

    def _group_status(self, group, phase, message, running):
        if group is None:
            return
        status = copy.deepcopy(group.get('status') or {})
        status['phase'] = phase
        status['running'] = running
        conditions = [c for c in status.get('conditions') or [] if c.get('type') not in ('Unschedulable', 'Scheduled')]
        now = timestamp()
        if message:
            conditions.append({'type': 'Unschedulable', 'status': 'True', 'reason': 'NotEnoughResources',
                               'message': message, 'lastTransitionTime': now, 'transitionID': ''})
        else:
            conditions.append({'type': 'Scheduled', 'status': 'True', 'reason': 'tasks in gang are ready to be scheduled',
                               'message': '', 'lastTransitionTime': now, 'transitionID': ''})
        status['conditions'] = conditions
        old = group.get('status') or {}
        if old.get('phase') == phase and old.get('running') == running and \
                [c.get('message') for c in old.get('conditions') or []] == [c.get('message') for c in conditions]:
            return
        self.store.write_status(self.podgroups, group, status)


def _amount(name, value):
    from . import quantity
    return quantity.amount(name, value)


def _tolerates(tolerations, taint):
    for tol in tolerations:
        if tol.get('effect') and tol.get('effect') != taint.get('effect'):
            continue
        operator = tol.get('operator', 'Equal')
        if not tol.get('key') and operator == 'Exists':
            return True
        if tol.get('key') != taint.get('key'):
            continue
        if operator == 'Exists' or tol.get('value', '') == taint.get('value', ''):
            return True
    return False


def _affinity_matches(spec, node):
    labels = node['metadata'].get('labels') or {}
    for key, value in (spec.get('nodeSelector') or {}).items():
        if labels.get(key) != value:
            return False
    required = (((spec.get('affinity') or {}).get('nodeAffinity') or {})
                .get('requiredDuringSchedulingIgnoredDuringExecution'))
    if not required:
        return True
    for term in required.get('nodeSelectorTerms') or []:
        if _term_matches(term, node, labels):
            return True
    return False


def _term_matches(term, node, labels):
    expressions = term.get('matchExpressions') or []
    fields = term.get('matchFields') or []
    if not expressions and not fields:
        return False
    for expr in expressions:
        key, op, values = expr.get('key'), expr.get('operator'), expr.get('values') or []
        present = key in labels
        value = labels.get(key)
        if op == 'In' and (not present or value not in values):
            return False
        if op == 'NotIn' and present and value in values:
            return False
        if op == 'Exists' and not present:
            return False
        if op == 'DoesNotExist' and present:
            return False
        if op in ('Gt', 'Lt'):
            try:
                number, bound = int(value), int(values[0])
            except (TypeError, ValueError, IndexError):
                return False
            if (op == 'Gt' and not number > bound) or (op == 'Lt' and not number < bound):
                return False
    for expr in fields:
        if expr.get('key') == 'metadata.name':
            name = node['metadata']['name']
            values = expr.get('values') or []
            if expr.get('operator') == 'In' and name not in values:
                return False
            if expr.get('operator') == 'NotIn' and name in values:
                return False
    return True


def _set_condition(status, condition):
    """Sets a condition; True when it changed (its transition time moves only on a new status)."""
    conditions = status.setdefault('conditions', [])
    for existing in conditions:
        if existing.get('type') == condition['type']:
            if all(existing.get(k) == v for k, v in condition.items()):
                return False
            if existing.get('status') != condition['status']:
                existing['lastTransitionTime'] = timestamp()
            existing.update(condition)
            return True
    condition = dict(condition)
    condition.setdefault('lastTransitionTime', timestamp())
    conditions.append(condition)
    return True

