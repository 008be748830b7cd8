"""The resource types the API server knows: kmock's bundled discovery data plus optional extras."""

import datetime

from kmock import ResourceInfo, ResourcesArray


class Res:
    """One resource type at one group/version (`pods` in `v1`, `podgroups` in
    `scheduling.volcano.sh/v1beta1`)."""

    def __init__(self, group, version, plural, info):
        self.group = group
        self.version = version
        self.plural = plural
        self.kind = info.kind or plural.capitalize()
        self.singular = info.singular or self.kind.lower()
        self.namespaced = bool(info.namespaced)
        self.verbs = set(info.verbs)
        self.subresources = set(info.subresources)
        self.shortnames = set(info.shortnames)
        self.categories = set(info.categories)
        # Where the objects are stored: resources served in two shapes (core and
        # events.k8s.io Events) share one store and convert on the way in and out.
        self.key = (group, plural)
        self.convert_in = None
        self.convert_out = None

    @property
    def api_version(self):
        return f'{self.group}/{self.version}' if self.group else self.version

    @property
    def qualified(self):
        """How error messages name the resource: `pods`, `deployments.apps`."""
        return f'{self.plural}.{self.group}' if self.group else self.plural

    def __repr__(self):
        return f'Res({self.api_version}/{self.plural})'


VOLCANO = {
    'scheduling.volcano.sh/v1beta1/podgroups': ResourceInfo(
        kind='PodGroup', singular='podgroup', namespaced=True,
        verbs={'create', 'delete', 'deletecollection', 'get', 'list', 'patch', 'update', 'watch'},
        shortnames={'pg', 'podgroup-v1beta1'}, subresources={'status'}),
    'scheduling.volcano.sh/v1beta1/queues': ResourceInfo(
        kind='Queue', singular='queue', namespaced=False,
        verbs={'create', 'delete', 'deletecollection', 'get', 'list', 'patch', 'update', 'watch'},
        shortnames={'q', 'queue-v1beta1'}, subresources={'status'}),
    'batch.volcano.sh/v1alpha1/jobs': ResourceInfo(
        kind='Job', singular='job', namespaced=True,
        verbs={'create', 'delete', 'deletecollection', 'get', 'list', 'patch', 'update', 'watch'},
        shortnames={'vcjob', 'vj'}, subresources={'status'}),
}


def load(array: ResourcesArray, volcano: bool):
    """Fills kmock's resource array (it serves discovery from it) and returns our index."""
    array.load_bundled()
    # The bundled data comes from a k3s cluster and carries a metrics API no one serves here.
    for res in list(array):
        if res.group == 'metrics.k8s.io':
            del array[res]
    if volcano:
        for key, info in VOLCANO.items():
            array[key] = info
    index = {}
    for res in array:
        index[(res.group, res.version, res.plural)] = Res(res.group, res.version, res.plural, array[res])
    events = index.get(('events.k8s.io', 'v1', 'events'))
    if events is not None:
        events.key = ('', 'events')
        events.convert_in = events_to_core
        events.convert_out = core_to_events
    return index


# core/v1 Event field ↔ events.k8s.io/v1 Event field, as the API server converts them.
_EVENT_FIELDS = [
    ('involvedObject', 'regarding'), ('related', 'related'), ('message', 'note'),
    ('reason', 'reason'), ('type', 'type'), ('action', 'action'), ('eventTime', 'eventTime'),
    ('reportingComponent', 'reportingController'), ('reportingInstance', 'reportingInstance'),
    ('source', 'deprecatedSource'), ('firstTimestamp', 'deprecatedFirstTimestamp'),
    ('lastTimestamp', 'deprecatedLastTimestamp'), ('count', 'deprecatedCount'),
]


def core_to_events(event):
    out = {'apiVersion': 'events.k8s.io/v1', 'kind': 'Event', 'metadata': event.get('metadata', {})}
    for core, new in _EVENT_FIELDS:
        if event.get(core) is not None:
            out[new] = event[core]
    series = event.get('series')
    if series:
        out['series'] = {'count': series.get('count'), 'lastObservedTime': series.get('lastObservedTime')}
    return out


def events_to_core(event):
    out = {'apiVersion': 'v1', 'kind': 'Event', 'metadata': event.get('metadata', {})}
    for core, new in _EVENT_FIELDS:
        if event.get(new) is not None:
            out[core] = event[new]
    if event.get('series'):
        out['series'] = dict(event['series'])
    return out


def now():
    return datetime.datetime.now(tz=datetime.timezone.utc)


def timestamp(moment=None):
    """RFC 3339 in seconds, as `metav1.Time` is serialised."""
    return (moment or now()).strftime('%Y-%m-%dT%H:%M:%SZ')


def micro_timestamp(moment=None):
    """RFC 3339 with microseconds, as `metav1.MicroTime` is serialised."""
    return (moment or now()).strftime('%Y-%m-%dT%H:%M:%S.%fZ')


__all__ = ['Res', 'load', 'timestamp', 'micro_timestamp', 'now']
