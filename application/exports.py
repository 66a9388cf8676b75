"""Exports of the clinical record: the CDISC ODM 1.3.2 archive per participant and for the whole study.

Each export is recorded on the audit trail before it is produced (``ExportRecorded``, R11). Readers:
inspectors, data managers, monitors, investigators and coordinators (site-bound roles: their site only;
a whole-study export by a site-bound user holds only their site's participants). Administrators:
nothing clinical.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from typing import Any
from uuid import uuid4

from application import concealment
from application.odm import CLINICAL_TOPICS, STUDY_OID, LeafLocator, OdmWriter, reorder, write_document
from application.views import iso
from domain import access
from domain.audit import Actor, make_stamp
from domain.errors import InvalidInput
from domain.export import ExportRecord

PAGE = 2000


class OdmExports:
    """The ODM exports of one TrialApplication, reading leaf indices from its Merkle log."""

    def __init__(self, app: Any, leaves: LeafLocator):
        self.app = app
        self.leaves = leaves

    def _record(self, actor: Actor, *, scope: str, participant_id: str | None, site: str | None, cut: int,
                as_of: dt.datetime | None, source: str) -> str:
        export_id = uuid4()
        file_oid = f"EXP.{STUDY_OID}.{scope.upper()}.{export_id}"
        record = ExportRecord.record(
            export_id=export_id, stamp=make_stamp(actor, source=source), format="cdisc-odm-1.3.2-transactional-archival",
            scope=scope, participant_id=participant_id, site=site, file_oid=file_oid, up_to_notification_id=cut,
            as_of=iso(as_of),
        )
        self.app._save(record)
        return file_oid

    def record_casebook_export(self, actor: Actor, participant_id: Any, *, fmt: str, as_of: dt.datetime | None,
                               source: str = "api") -> str:
        """A human-readable casebook (HTML or PDF) leaving the system is an export too (R11)."""
        participant = self.app._casebook_participant(actor, participant_id)
        export_id = uuid4()
        record = ExportRecord.record(
            export_id=export_id, stamp=make_stamp(actor, source=source), format=f"casebook-{fmt}", scope="participant",
            participant_id=str(participant.id), site=participant.site, file_oid=f"CASEBOOK.{export_id}",
            up_to_notification_id=self.app.recorder.max_notification_id() or 0, as_of=iso(as_of),
        )
        self.app._save(record)
        return str(export_id)

    # ------------------------------------------------------------------ one participant
    def participant(self, actor: Actor, participant_id: Any, *, as_of: dt.datetime | None = None,
                    source: str = "api") -> Iterator[bytes]:
        """The participant's casebook as an ODM archive: every event of it, one transaction each."""
        if as_of is not None and as_of.tzinfo is None:
            raise InvalidInput.one("as_of", "give an instant with its zone, e.g. 2026-03-12T00:00:00Z")
        participant = self.app._casebook_participant(actor, participant_id, "export.odm")
        created = dt.datetime.now(dt.timezone.utc)
        cut = self.app.recorder.max_notification_id() or 0
        until = min(as_of, created) if as_of else created
        located = []
        for aggregate_id in self.app.casebook_aggregate_ids(participant):
            events = list(self.app.events.get(aggregate_id))
            leaves = self.leaves.leaves_of(aggregate_id)
            for e, leaf in zip(events, leaves):
                if e.timestamp <= until and leaf.notification_id <= cut:
                    located.append((e.timestamp, leaf.notification_id, leaf.leaf_index, e))
        located.sort(key=lambda t: t[:2])
        file_oid = self._record(actor, scope="participant", participant_id=str(participant.id), site=participant.site,
                                cut=cut, as_of=as_of, source=source)
        writer = OdmWriter(self.app.sites, conceal=concealment.conceals(actor))
        blocks = (b for _, nid, leaf, e in located if (b := writer.render(e, nid, leaf)) is not None)
        return write_document(writer, blocks, lambda: writer.header(
            file_oid=file_oid, created=created, as_of=as_of, granularity="SingleSubject",
            description=f"Audit trail of participant {participant.id} (site {participant.site}), NCT05214014"))

    # ------------------------------------------------------------------ the whole study
    def study(self, actor: Actor, *, source: str = "api", progress: Callable[[int, int], None] | None = None,
              page: int = PAGE) -> Iterator[bytes]:
        """Every clinical event of the trial (site-bound users: their site), streamed from the notification log."""
        access.require(actor, "export.odm")
        site = actor.site if access.is_site_bound(actor) else None
        cut = self.app.recorder.max_notification_id() or 0
        created = dt.datetime.now(dt.timezone.utc)
        file_oid = self._record(actor, scope="site" if site else "study", participant_id=None, site=site, cut=cut,
                                as_of=None, source=source)
        writer = OdmWriter(self.app.sites, conceal=concealment.conceals(actor))
        blocks = reorder(self._study_blocks(writer, cut, site, progress, page))
        return write_document(writer, blocks, lambda: writer.header(
            file_oid=file_oid, created=created, as_of=None, granularity="SingleSite" if site else "All",
            description="Audit trail of NCT05214014" + (f", site {site}" if site else "")))

    def _study_blocks(self, writer: OdmWriter, cut: int, site: str | None,
                      progress: Callable[[int, int], None] | None, page: int) -> Iterator[tuple[tuple, str]]:
        recorder, mapper = self.app.recorder, self.app.mapper
        after_nid, after_leaf, done = 0, -1, 0
        while after_nid < cut:
            notifications = recorder.select_notifications(
                start=after_nid, limit=page, stop=cut, inclusive_of_start=False)
            if not notifications:
                break
            leaf_of = {nid: index for index, nid, _ in self.leaves.scan_leaves(after_leaf, len(notifications))}
            for n in notifications:
                if n.topic.startswith(CLINICAL_TOPICS):
                    e = mapper.to_domain_event(n)
                    if site is not None:
                        writer.learn(e)
                        owner = writer.owners.get(e.originator_id)
                        if owner is None or owner[2] != site:
                            continue
                    block = writer.render(e, n.id, leaf_of.get(n.id))
                    if block is not None:
                        yield (e.timestamp, n.id), block
            after_nid = notifications[-1].id
            if leaf_of:
                after_leaf = max(leaf_of.values())
            done += len(notifications)
            if progress:
                progress(done, cut)
