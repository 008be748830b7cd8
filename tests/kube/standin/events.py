"""Events as the scheduler and the kubelet record them (core `v1` Events; the same event again
bumps `count` and `lastTimestamp` instead of making a new one)."""

import copy
import time

from .resources import micro_timestamp, timestamp


class Recorder:
    def __init__(self, store):
        self.store = store
        self.res = store.res('', 'v1', 'events')
        self.seen = {}

    def record(self, obj, reason, message, kind='Normal', component='kubelet', host=None,
               field_path=None, action=None):
        meta = obj['metadata']
        namespace = meta.get('namespace') or 'default'
        key = (meta.get('uid'), reason, message, component, field_path)
        now = timestamp()
        name = self.seen.get(key)
        existing = self.store.objects[self.res.key].get((namespace, name)) if name else None
        if existing is not None:
            new = copy.deepcopy(existing)
            new['count'] = int(existing.get('count') or 1) + 1
            new['lastTimestamp'] = now
            self.store.write(self.res, new)
            return
        name = f"{meta['name']}.{time.time_ns():x}"
        involved = {
            'kind': obj.get('kind'), 'namespace': meta.get('namespace'), 'name': meta['name'],
            'uid': meta.get('uid'), 'apiVersion': obj.get('apiVersion'),
            'resourceVersion': meta.get('resourceVersion'),
        }
        if field_path:
            involved['fieldPath'] = field_path
        if not involved['namespace']:
            involved.pop('namespace')
        source = {'component': component}
        if host:
            source['host'] = host
        event = {
            'apiVersion': 'v1', 'kind': 'Event',
            'metadata': {'name': name, 'namespace': namespace},
            'involvedObject': involved, 'reason': reason, 'message': message,
            'source': source, 'firstTimestamp': now, 'lastTimestamp': now, 'count': 1,
            'type': kind, 'eventTime': None,
            'reportingComponent': component, 'reportingInstance': host or component,
        }
        if component == 'default-scheduler' or component == 'volcano':
            event['eventTime'] = micro_timestamp()
            event['action'] = action or 'Scheduling'
        event = {k: v for k, v in event.items() if v is not None}
        self.seen[key] = name
        try:
            self.store.create(self.res, namespace, event)
        except Exception:
            self.seen.pop(key, None)
