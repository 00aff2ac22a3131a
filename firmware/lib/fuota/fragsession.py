"""TS005-1.0.0 fragmented data block transport, node side (fPort 201).

Commands (TS005 §4; the answer has the request's CID; little-endian fields):

=====  =====================================================  ==================================
CID    down (network -> node)                                  up (node -> network)
0x00   PackageVersionReq                                       PackageVersionAns: 3, 1
0x01   FragSessionStatusReq: Participants (bit 0), FragIndex   FragSessionStatusAns: NbFragReceived
       (bits 1..2)                                             (bits 0..13) + FragIndex (14..15)
                                                               u16, MissingFrag u8, Status
                                                               (bit 0 NotEnoughMatrixMemory)
0x02   FragSessionSetupReq: FragSession (McGroupBitMask        FragSessionSetupAns: StatusBitMask
       bits 0..3, FragIndex bits 4..5), NbFrag u16, FragSize   (bit 0 encoding unsupported, 1 not
       u8, Control (BlockAckDelay bits 0..2,                   enough memory, 2 FragIndex not
       FragmentationMatrix bits 3..5), Padding u8,             supported, 3 wrong descriptor;
       Descriptor u32 (10 bytes)                               FragIndex bits 6..7)
0x03   FragSessionDeleteReq: FragIndex (bits 0..1)             FragSessionDeleteAns: FragIndex,
                                                               SessionDoesNotExist (bit 2)
0x08   DataFragment: IndexAndN u16 (N bits 0..13, FragIndex    (none)
       bits 14..15), then FragSize bytes
=====  =====================================================  ==================================

One session at a time (the heap holds one decoder); its fragments go to a flash file
(fuota.fragdecoder). Fragments come by unicast, or by multicast from a group in the session's
McGroupBitMask (TS005 §4.2: unicast can always feed a session). A status request that came by
multicast is answered after a random delay of up to 2^(BlockAckDelay + 4) s (TS005 §4.3), so a
whole group does not answer at once. When the file is complete ``on_complete(path, size)`` runs
once (size = NbFrag x FragSize - Padding). The session and the bitmap of rows in place go to a
small file beside the fragments every ``save_every`` fragments, so a node that loses power in a
campaign (lamps on switched night circuits do, every morning) resumes it (:meth:`resume`).
"""

try:
    from micropython import const  # pyright: ignore[reportAssignmentType]
except ImportError:  # CPython

    def const(x):  # type: ignore[no-redef]
        return x


import json
import os

from hal.flashfile import FlashFile

from fuota import fragdecoder as fd

PORT = const(201)
PACKAGE_ID = const(3)  # TS005 §4.1
PACKAGE_VERSION = const(1)
_PKG = const(0x00)
_STATUS = const(0x01)
_SETUP = const(0x02)
_DELETE = const(0x03)
_FRAGMENT = const(0x08)
_ST_ENCODING = const(0x01)
_ST_MEMORY = const(0x02)
_ST_INDEX = const(0x04)


class Session:
    def __init__(self, index, mask, nb, size, delay, padding, descriptor, decoder):
        self.index = index
        self.mask = mask
        self.nb = nb
        self.size = size
        self.delay = delay
        self.padding = padding
        self.descriptor = descriptor
        self.decoder = decoder
        self.reported = False  # on_complete ran
        self.applied = False  # the file was handled (applied or refused): not again on resume


class Fragmentation:
    def __init__(self, path, max_file, max_missing, on_complete=None, rng=None, save_every=16):
        self.path = path
        self.max_file = max_file
        self.max_missing = max_missing
        self.on_complete = on_complete
        self._rng = rng
        self.save_every = save_every
        self._unsaved = 0
        self.session = None
        self.refused = 0  # fragments refused (no session, wrong group, size, index)
        self.answer_delay_ms = 0  # when > 0: send the answers in ``out`` this much later

    # ---------------------------------------------------------------- power cuts

    def _save(self):
        """The session and its rows in place, to ``path + ".st"`` (written, then renamed)."""
        s = self.session
        if s is None:
            return
        received, highest, got = s.decoder.known_rows()
        doc = {
            "index": s.index, "mask": s.mask, "nb": s.nb, "size": s.size, "delay": s.delay,
            "padding": s.padding, "descriptor": s.descriptor, "received": received,
            "highest": highest, "got": "".join("%02x" % b for b in got), "applied": s.applied,
        }  # fmt: skip
        tmp = self.path + ".st.tmp"
        with open(tmp, "w") as f:
            json.dump(doc, f)
        os.rename(tmp, self.path + ".st")
        self._unsaved = 0

    def resume(self):
        """After a restart: take up the session a power cut interrupted (its rows are on flash).

        A finished session comes back finished; ``on_complete`` runs again unless the file was
        already handled (:meth:`mark_applied`). Returns True when resumed.
        """
        try:
            with open(self.path + ".st") as f:
                doc = json.load(f)
            got = bytes(int(doc["got"][i : i + 2], 16) for i in range(0, len(doc["got"]), 2))
            dec = fd.FragDecoder(self.path, doc["nb"], doc["size"], self.max_missing, True)
        except (OSError, ValueError, KeyError, TypeError):
            return False
        if not dec.resume(doc["received"], doc["highest"], got):
            dec.close()
            return False
        self.session = Session(
            doc["index"], doc["mask"], doc["nb"], doc["size"], doc["delay"], doc["padding"],
            doc["descriptor"], dec,
        )  # fmt: skip
        self.session.applied = bool(doc.get("applied"))
        if dec.done and not self.session.applied:
            self._completed(self.session)
        return True

    def mark_applied(self):
        """The complete file was handled; a restart keeps the session (status) but not the job."""
        s = self.session
        if s is not None and s.decoder.done:
            s.applied = True
            self._save()

    def _completed(self, s):
        if not s.reported:
            s.reported = True
            if self.on_complete is not None:
                self.on_complete(self.path, s.nb * s.size - s.padding)

    def handle(self, p, out, group=None):
        """Apply the commands in ``p`` (``group``: the multicast group it came on, or None)."""
        self.answer_delay_ms = 0
        i = 0
        n = len(p)
        while i < n:
            cid = p[i]
            if cid == _PKG:
                out.append(_PKG)
                out.append(PACKAGE_ID)
                out.append(PACKAGE_VERSION)
                i += 1
            elif cid == _STATUS and i + 2 <= n:
                self._status(p[i + 1], out, group)
                i += 2
            elif cid == _SETUP and i + 11 <= n:
                self._setup(p, i + 1, out)
                i += 11
            elif cid == _DELETE and i + 2 <= n:
                idx = p[i + 1] & 0x03
                s = self.session
                out.append(_DELETE)
                if s is not None and s.index == idx:
                    self._drop_session()
                    out.append(idx)
                else:
                    out.append(idx | 0x04)
                i += 2
            elif cid == _FRAGMENT and i + 3 <= n:
                self._fragment(p, i + 1, group)
                return  # the fragment runs to the end of the payload
            else:
                break

    def _drop_session(self):
        s = self.session
        if s is not None:
            s.decoder.close()
            FlashFile.remove(self.path)
        FlashFile.remove(self.path + ".st")
        self.session = None

    def _setup(self, p, i, out):
        head = p[i]
        mask = head & 0x0F
        idx = (head >> 4) & 0x03
        nb = p[i + 1] | (p[i + 2] << 8)
        size = p[i + 3]
        control = p[i + 4]
        padding = p[i + 5]
        descriptor = p[i + 6] | (p[i + 7] << 8) | (p[i + 8] << 16) | (p[i + 9] << 24)
        status = 0
        if (control >> 3) & 0x07 != 0:
            status |= _ST_ENCODING  # only the TS005 annex parity matrix (index 0)
        if nb == 0 or size == 0 or nb > fd.MAX_N or nb * size > self.max_file or padding >= size:
            status |= _ST_MEMORY
        s = self.session
        if s is not None and s.index != idx and not s.decoder.done:
            status |= _ST_INDEX  # one session at a time; another is still receiving
        if not status:
            self._drop_session()
            try:
                dec = fd.FragDecoder(self.path, nb, size, self.max_missing)
            except (OSError, MemoryError):
                dec = None
                status |= _ST_MEMORY
            if dec is not None:
                self.session = Session(
                    idx, mask, nb, size, control & 0x07, padding, descriptor, dec
                )
                self._save()
        out.append(_SETUP)
        out.append(status | (idx << 6))

    def _status(self, param, out, group):
        participants = param & 0x01
        idx = (param >> 1) & 0x03
        s = self.session
        if s is None or s.index != idx:
            return
        dec = s.decoder
        if dec.done and not participants:
            return  # only those still missing fragments answer (TS005 §4.3)
        missing = dec.missing()
        out.append(_STATUS)
        received = dec.received & 0x3FFF
        out.append(received & 0xFF)
        out.append((received >> 8) | (idx << 6))
        out.append(missing if missing < 255 else 255)
        out.append(0x01 if dec.no_memory else 0)
        if group is not None and self._rng is not None:
            self.answer_delay_ms = self._rng.randrange((1 << (s.delay + 4)) * 1000)

    def _fragment(self, p, i, group):
        s = self.session
        word = p[i] | (p[i + 1] << 8)
        n = word & 0x3FFF
        idx = word >> 14
        if s is None or s.index != idx:
            self.refused += 1
            return
        if group is not None and not s.mask & (1 << group):
            self.refused += 1
            return
        data = memoryview(p)[i + 2 :]
        got = s.decoder.add(n, data)
        if got == fd.REFUSED and not s.decoder.done:  # after completion: redundancy, not refused
            self.refused += 1
        elif got == fd.DONE:
            self._save()
            self._completed(s)
        elif got == fd.ADDED:
            self._unsaved += 1
            if self._unsaved >= self.save_every:
                self._save()
