"""The kube-controller-manager's part: the garbage collector (owner references, foreground and
orphan deletion), the namespace controller, the service-account controller, the pod garbage
collector (pods of vanished nodes) and a provisioner that binds every claim at once."""

import asyncio
import copy
import logging

from .errors import ApiError

log = logging.getLogger('standin.controllers')


class Controllers:
    def __init__(self, store):
        self.store = store
        self.wake = asyncio.Event()
        self.namespaces = store.res('', 'v1', 'namespaces')
        self.pods = store.res('', 'v1', 'pods')
        self.nodes = store.res('', 'v1', 'nodes')
        self.accounts = store.res('', 'v1', 'serviceaccounts')
        self.claims = store.res('', 'v1', 'persistentvolumeclaims')
        self.volumes = store.res('', 'v1', 'persistentvolumes')
        self.configmaps = store.res('', 'v1', 'configmaps')
        store.listeners.append(self._on_change)

    def _on_change(self, res, kind, old, new):
        meta = new['metadata']
        if kind == 'DELETED' or meta.get('ownerReferences') or meta.get('deletionTimestamp'):
            self.wake.set()
        if res.key == self.namespaces.key and kind == 'ADDED':
            self.wake.set()
        if res.key == self.claims.key and kind == 'ADDED':
            self.wake.set()
        if res.key == self.nodes.key and kind == 'DELETED':
            self.wake.set()

    async def run(self):
        while True:
            try:
                await asyncio.wait_for(self.wake.wait(), timeout=2)
            except asyncio.TimeoutError:
                pass
            self.wake.clear()
            try:
                for _ in range(20):
                    if not self.sweep():
                        break
            except Exception:
                log.exception('controller pass failed')
            await asyncio.sleep(0.02)

    def _all(self):
        for key, objects in list(self.store.objects.items()):
            res = self.store.res_of_key(key)
            if res is None:
                continue
            for obj in list(objects.values()):
                yield res, obj

    def _delete(self, res, obj, policy='Background'):
        meta = obj['metadata']
        try:
            self.store.delete(res, meta.get('namespace'), meta['name'],
                              {'propagationPolicy': policy, 'preconditions': {'uid': meta['uid']}})
            return True
        except ApiError:
            return False

    def sweep(self):
        """One pass of every controller; True when it changed something."""
        changed = False
        changed |= self._namespaces()
        changed |= self._garbage()
        changed |= self._claims()
        changed |= self._orphan_pods()
        return changed

    # ---- garbage collector ----

    def _garbage(self):
        changed = False
        store = self.store
        for res, obj in list(self._all()):
            meta = obj['metadata']
            finalizers = meta.get('finalizers') or []
            if meta.get('deletionTimestamp') and 'orphan' in finalizers:
                for dep_key, dep in store.dependents(meta['uid']):
                    dep_res = store.res_of_key(dep_key)
                    new = copy.deepcopy(dep)
                    new['metadata']['ownerReferences'] = [r for r in dep['metadata']['ownerReferences'] if r.get('uid') != meta['uid']]
                    if not new['metadata']['ownerReferences']:
                        del new['metadata']['ownerReferences']
                    store.write(dep_res, new)
                new = copy.deepcopy(store.objects[res.key].get(store._key(res, obj)) or obj)
                new['metadata']['finalizers'] = [f for f in finalizers if f != 'orphan']
                store.write(res, new)
                changed = True
                continue
            if meta.get('deletionTimestamp') and 'foregroundDeletion' in finalizers:
                dependents = store.dependents(meta['uid'])
                waiting = False
                for dep_key, dep in dependents:
                    dep_res = store.res_of_key(dep_key)
                    if not dep['metadata'].get('deletionTimestamp'):
                        self._delete(dep_res, dep, 'Foreground')
                        changed = True
                    if any(r.get('uid') == meta['uid'] and r.get('blockOwnerDeletion') for r in dep['metadata'].get('ownerReferences') or []):
                        waiting = True
                if not waiting:
                    new = copy.deepcopy(store.objects[res.key].get(store._key(res, obj)) or obj)
                    new['metadata']['finalizers'] = [f for f in finalizers if f != 'foregroundDeletion']
                    store.write(res, new)
                    changed = True
                continue
            refs = meta.get('ownerReferences') or []
            if not refs or meta.get('deletionTimestamp'):
                continue
            alive = []
            foreground_owner = False
            for ref in refs:
                owner = store.by_uid(ref.get('uid'))
                if owner is not None:
                    alive.append(ref)
                    if owner['metadata'].get('deletionTimestamp') and 'foregroundDeletion' in (owner['metadata'].get('finalizers') or []):
                        foreground_owner = True
            if not alive:
                log.info('garbage collecting %s %s/%s: its owners are gone', res.kind, meta.get('namespace'), meta['name'])
                changed |= self._delete(res, obj, 'Background')
            elif len(alive) < len(refs):
                new = copy.deepcopy(obj)
                new['metadata']['ownerReferences'] = alive
                store.write(res, new)
                changed = True
            elif foreground_owner and len(alive) == 1:
                changed |= self._delete(res, obj, 'Foreground')
        return changed

    # ---- namespaces and their service accounts ----

    def _namespaces(self):
        changed = False
        store = self.store
        for ns in list(store.objects[self.namespaces.key].values()):
            name = ns['metadata']['name']
            if not ns['metadata'].get('deletionTimestamp'):
                if (name, 'default') not in store.objects[self.accounts.key]:
                    store.create(self.accounts, name, {'metadata': {'name': 'default'}})
                    changed = True
                if (name, 'kube-root-ca.crt') not in store.objects[self.configmaps.key]:
                    store.create(self.configmaps, name, {'metadata': {'name': 'kube-root-ca.crt'},
                                                         'data': {'ca.crt': 'stand-in: no TLS\n'}})
                    changed = True
                continue
            left = 0
            for res, obj in list(self._all()):
                if not res.namespaced or obj['metadata'].get('namespace') != name:
                    continue
                left += 1
                if not obj['metadata'].get('deletionTimestamp'):
                    self._delete(res, obj, 'Background')
                    changed = True
            if left == 0:
                new = copy.deepcopy(ns)
                new['spec']['finalizers'] = []
                store.write(self.namespaces, new)
                changed = True
        return changed

    # ---- storage ----

    def _claims(self):
        changed = False
        store = self.store
        for claim in list(store.objects[self.claims.key].values()):
            if (claim.get('status') or {}).get('phase') != 'Pending' or claim['metadata'].get('deletionTimestamp'):
                continue
            spec = claim.get('spec') or {}
            volume_name = f"pvc-{claim['metadata']['uid']}"
            size = ((spec.get('resources') or {}).get('requests') or {}).get('storage', '1Gi')
            modes = spec.get('accessModes') or ['ReadWriteOnce']
            if (None, volume_name) not in store.objects[self.volumes.key]:
                store.create(self.volumes, None, {
                    'metadata': {'name': volume_name},
                    'spec': {'capacity': {'storage': size}, 'accessModes': modes,
                             'persistentVolumeReclaimPolicy': 'Delete',
                             'storageClassName': spec.get('storageClassName') or 'standard',
                             'hostPath': {'path': f'/tmp/{volume_name}'},
                             'claimRef': {'kind': 'PersistentVolumeClaim', 'namespace': claim['metadata']['namespace'],
                                          'name': claim['metadata']['name'], 'uid': claim['metadata']['uid'],
                                          'apiVersion': 'v1'}}})
            new = copy.deepcopy(claim)
            new['spec']['volumeName'] = volume_name
            new['spec'].setdefault('storageClassName', 'standard')
            store.write(self.claims, new)
            claim = store.objects[self.claims.key][(claim['metadata']['namespace'], claim['metadata']['name'])]
            store.write_status(self.claims, claim, {'phase': 'Bound', 'accessModes': modes,
                                                    'capacity': {'storage': size}})
            changed = True
        return changed

    # ---- pods of nodes that no longer exist ----

    def _orphan_pods(self):
        changed = False
        store = self.store
        for pod in list(store.objects[self.pods.key].values()):
            node = (pod.get('spec') or {}).get('nodeName')
            if node and (None, node) not in store.objects[self.nodes.key]:
                meta = pod['metadata']
                try:
                    store.delete(self.pods, meta['namespace'], meta['name'], {'gracePeriodSeconds': 0})
                    changed = True
                except ApiError:
                    pass
        return changed
