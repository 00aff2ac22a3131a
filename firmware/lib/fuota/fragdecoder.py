"""TS005 forward error correction on the node: rebuild a file from fragments, some of them lost.

Source: LoRaWAN TS005-1.0.0 (fragmented data block transport), annex "Fragmentation
algorithm": fragments 1..M are the file's rows as they are; fragment M + n (n >= 1) is the XOR
of the rows chosen by ``matrix_line(n, M)``, a row of the parity matrix drawn from the PRBS23
generator below (M/2 draws, a drawn column set once). The same construction is ChirpStack's
encoder (lorawan applayer/fragmentation) and protocol/fuota/fec.py here; LoRaMac-node's
FragDecoder decodes it. This decoder is our own: online Gaussian elimination over GF(2).

Memory: every fragment, and every coded row kept for elimination, lives in a flash file
(hal.flashfile); the heap holds two bitmaps of M bits, the parity row of the fragment at hand, and
once the first coded fragment arrives, an L x L bit matrix for the L fragments still missing then
(L <= ``max_missing``: beyond it the session reports NotEnoughMatrixMemory, TS005 §4.2).

Method: until the first coded fragment, uncoded fragments are written to their place. Then the
missing rows become the unknowns (columns 0..L-1). Each coded fragment has its known rows XORed
out (read back from flash), leaving a row over the unknowns; it is reduced against the stored
rows (each keyed by its lowest column, the pivot) and kept when it brings a new pivot, otherwise
dropped as redundant. An uncoded fragment that arrives late is a row with one bit. With L
pivots the system has full rank: back substitution from the highest pivot down writes every
missing row to its place.
"""

try:
    from micropython import const  # pyright: ignore[reportAssignmentType]
except ImportError:  # CPython

    def const(x):  # type: ignore[no-redef]
        return x


from hal.flashfile import FlashFile

MAX_N = const(16383)  # N is 14 bits in DataFragment (TS005 §4.4)

# add() outcomes
ADDED = const(0)
DUPLICATE = const(1)  # already known, or a coded fragment that brought nothing new
DONE = const(2)  # the file is complete (this fragment finished it)
REFUSED = const(3)  # wrong size, N out of range, session full or already finished


def prbs23(x):
    """One step of TS005's PRBS23 generator (annex)."""
    b0 = x & 1
    b1 = (x & 32) >> 5
    return (x >> 1) + ((b0 ^ b1) << 22)


def parity_line(n, m, line):
    """Set in ``line`` (a zeroed bitmap of m bits) the rows XORed into coded fragment M + n."""
    mm = 1 if m & (m - 1) == 0 else 0  # TS005 annex: M + 1 is used when M is a power of 2
    x = 1 + 1001 * n
    for _ in range(m >> 1):
        r = 1 << 16
        while r >= m:
            x = prbs23(x)
            r = x % (m + mm)
        line[r >> 3] |= 1 << (r & 7)


def _xor(dst, src, n):
    for i in range(n):
        dst[i] ^= src[i]


def _lowest(row, nbytes):
    for i in range(nbytes):
        b = row[i]
        if b:
            j = 0
            while not b & 1:
                b >>= 1
                j += 1
            return (i << 3) + j
    return -1


class FragDecoder:
    """Reassembles M fragments of ``size`` bytes into the file at ``path``."""

    def __init__(self, path, m, size, max_missing, resume=False):
        self.m = m
        self.size = size
        self.max_missing = max_missing
        self.file = FlashFile(path, create=not resume)
        mb = (m + 7) >> 3
        self._got = bytearray(mb)  # rows known: received uncoded, or solved
        self._line = bytearray(mb)
        self._buf = bytearray(size)
        self._tmp = bytearray(size)
        self.received = 0  # fragments taken (uncoded and coded, duplicates not counted)
        self.known = 0  # rows known
        self.highest = 0  # highest N heard
        self.done = False
        self.no_memory = False  # more rows lost than the matrix can hold (TS005 §4.2)
        self._coding = False  # coded fragments have started: the unknowns are fixed
        self._cols = []  # missing rows (ascending), the unknowns
        self._rb = 1  # bytes per matrix row
        self._rows = bytearray(0)  # L x rb bit matrix, pivot rows in slots
        self._pivot = []  # column -> slot, or -1
        self._row = bytearray(1)
        self._slots = 0

    def missing(self):
        """Fragments still needed (TS005 MissingFrag); 0 when done."""
        if self.done:
            return 0
        if not self._coding:
            seen = self.highest if self.highest < self.m else self.m
            return seen - self.known if seen > self.known else 0
        return len(self._cols) - self._slots

    def close(self):
        self.file.close()

    # ---------------------------------------------------------------- power cuts

    def known_rows(self):
        """(received, highest, bitmap of the rows in place): what survives a power cut.

        Rows solved by elimination and the pivot rows are not kept: after a restart the rows
        still missing become the unknowns again at the next coded fragment.
        """
        self.file.flush()  # every row the bitmap names is on flash before the bitmap is
        return self.received, self.highest, bytes(self._got)

    def resume(self, received, highest, got):
        if len(got) != len(self._got):
            return False
        known = 0
        for i in range(self.m):
            if got[i >> 3] & (1 << (i & 7)):
                known += 1
        self._got[:] = got
        self.known = known
        self.received = received
        self.highest = highest
        if known == self.m:
            self.done = True
        return True

    # ---------------------------------------------------------------- flash

    def _read_row(self, idx, buf):
        self.file.read_into(idx * self.size, buf, self.size)

    def _write_row(self, idx, buf):
        self.file.write_at(idx * self.size, buf, self.size)

    def _read_slot(self, slot, buf):
        self.file.read_into((self.m + slot) * self.size, buf, self.size)

    def _write_slot(self, slot, buf):
        self.file.write_at((self.m + slot) * self.size, buf, self.size)

    # ---------------------------------------------------------------- fragments

    def add(self, n, data):
        """Take fragment ``n`` (1-based N of TS005 §4.4) with its ``size`` bytes."""
        if self.done or self.no_memory or len(data) != self.size or n < 1 or n > MAX_N:
            return REFUSED
        if n > self.highest:
            self.highest = n
        if n <= self.m:
            return self._uncoded(n - 1, data)
        return self._coded(n - self.m, data)

    def _uncoded(self, idx, data):
        bit = 1 << (idx & 7)
        if self._got[idx >> 3] & bit:
            return DUPLICATE
        self.received += 1
        if not self._coding:
            self._write_row(idx, data)
            self._got[idx >> 3] |= bit
            self.known += 1
            if self.known == self.m:
                return self._finish()
            return ADDED
        # late: a row with one bit, reduced like a coded one
        col = self._col_of(idx)
        if col < 0:
            return DUPLICATE
        row = self._row
        for i in range(self._rb):
            row[i] = 0
        row[col >> 3] = 1 << (col & 7)
        buf = self._buf
        for i in range(self.size):
            buf[i] = data[i]
        return self._reduce()

    def _col_of(self, idx):
        cols = self._cols
        lo = 0
        hi = len(cols)
        while lo < hi:
            mid = (lo + hi) >> 1
            if cols[mid] < idx:
                lo = mid + 1
            else:
                hi = mid
        return lo if lo < len(cols) and cols[lo] == idx else -1

    def _start_coded(self):
        m = self.m
        got = self._got
        cols = []
        for idx in range(m):
            if not got[idx >> 3] & (1 << (idx & 7)):
                cols.append(idx)
        if len(cols) > self.max_missing:
            self.no_memory = True
            return False
        n = len(cols)
        self._coding = True
        self._cols = cols
        self._rb = (n + 7) >> 3 if n else 1
        self._rows = bytearray(n * self._rb)
        self._pivot = [-1] * n
        self._row = bytearray(self._rb)
        return True

    def _coded(self, n, data):
        if not self._coding and not self._start_coded():
            return REFUSED
        self.received += 1
        m = self.m
        line = self._line
        for i in range(len(line)):
            line[i] = 0
        parity_line(n, m, line)
        buf = self._buf
        tmp = self._tmp
        size = self.size
        for i in range(size):
            buf[i] = data[i]
        row = self._row
        for i in range(self._rb):
            row[i] = 0
        got = self._got
        for byte in range(len(line)):
            bits = line[byte]
            if not bits:
                continue
            for j in range(8):
                if not bits & (1 << j):
                    continue
                idx = (byte << 3) + j
                if got[byte] & (1 << j):
                    self._read_row(idx, tmp)  # a known row: XOR it out
                    _xor(buf, tmp, size)
                else:
                    col = self._col_of(idx)
                    row[col >> 3] |= 1 << (col & 7)
        return self._reduce()

    def _reduce(self):
        rb = self._rb
        row = self._row
        rows = self._rows
        buf = self._buf
        tmp = self._tmp
        size = self.size
        while True:
            col = _lowest(row, rb)
            if col < 0:
                return DUPLICATE  # a combination of rows already held
            slot = self._pivot[col]
            if slot < 0:
                slot = self._slots
                base = slot * rb
                for i in range(rb):
                    rows[base + i] = row[i]
                self._write_slot(slot, buf)
                self._pivot[col] = slot
                self._slots += 1
                if self._slots == len(self._cols):
                    return self._solve()
                return ADDED
            base = slot * rb
            for i in range(rb):
                row[i] ^= rows[base + i]
            self._read_slot(slot, tmp)
            _xor(buf, tmp, size)

    def _solve(self):
        """Back substitution: every pivot row's higher columns are solved before it."""
        rb = self._rb
        rows = self._rows
        cols = self._cols
        buf = self._buf
        tmp = self._tmp
        size = self.size
        for col in range(len(cols) - 1, -1, -1):
            slot = self._pivot[col]
            self._read_slot(slot, buf)
            base = slot * rb
            for other in range(col + 1, len(cols)):
                if rows[base + (other >> 3)] & (1 << (other & 7)):
                    self._read_row(cols[other], tmp)
                    _xor(buf, tmp, size)
            self._write_row(cols[col], buf)
            idx = cols[col]
            self._got[idx >> 3] |= 1 << (idx & 7)
            self.known += 1
        return self._finish()

    def _finish(self):
        self.done = True
        self.file.flush()
        # the pivot rows are no longer needed: give their heap back
        self._rows = bytearray(0)
        self._pivot = []
        return DONE
