"""Check an unsigned input zone file before any signer sees it.

The signers get our rewrite of the zone (`CheckedZone.text`), never the operator's file: one RR per line,
absolute names, explicit TTL and class, SOA first, includes expanded. So what they sign is exactly what was
checked here, whatever their own parser would make of $INCLUDE paths, $GENERATE or relative names.

Parsing reuses dnspython's zone-file reader for the hard parts (record lines, TTL defaults, $GENERATE) but
drives the directive loop itself: dnspython silently drops out-of-zone records, opens $INCLUDE paths
relative to the working directory without limits, and does not remember on which line a record was.
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, cast

import dns.exception
import dns.grange
import dns.name
import dns.node
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.SOA
import dns.tokenizer
import dns.transaction
import dns.ttl
import dns.zonefile

from duo_ods.config.limits import DEFAULT_MAX_BYTES, DEFAULT_MAX_RECORDS
from duo_ods.dns.names import normalize_zone_name
from duo_ods.errors import ZoneFileError

DnssecPolicy = Literal["refuse", "strip"]

_RT = dns.rdatatype.RdataType
_NodeKind = dns.node.NodeKind

# What the signer makes; an input carrying these is a signed zone fed back in by mistake.
_SIGNER_TYPES: frozenset[dns.rdatatype.RdataType] = frozenset(
    {_RT.DNSKEY, _RT.RRSIG, _RT.NSEC, _RT.NSEC3, _RT.NSEC3PARAM}
)

# Types written in their usual presentation form. Anything else goes out in the RFC 3597 generic form
# (TYPEnnn \# len hex): the wire data is the same, and an older ldns in the signer cannot misread it.
_PRESENTATION_TYPES: frozenset[dns.rdatatype.RdataType] = frozenset(
    {
        _RT.A, _RT.NS, _RT.CNAME, _RT.SOA, _RT.PTR, _RT.HINFO, _RT.MX, _RT.TXT, _RT.RP, _RT.AFSDB,
        _RT.AAAA, _RT.LOC, _RT.SRV, _RT.NAPTR, _RT.KX, _RT.CERT, _RT.DNAME, _RT.DS, _RT.SSHFP,
        _RT.IPSECKEY, _RT.DHCID, _RT.TLSA, _RT.SMIMEA, _RT.CDS, _RT.CDNSKEY, _RT.OPENPGPKEY, _RT.SPF,
        _RT.URI, _RT.CAA,
    }
)  # fmt: skip

_MAX_INCLUDE_DEPTH = 16

# Files an editor or a copy tool leaves next to the real one while it works.
_TEMP_SUFFIXES = (".swp", ".swo", ".swx", ".tmp", "~")
_VIM_PROBE = "4913"  # vim creates and deletes this to test that it may write in the directory

_CAUGHT_RE = re.compile(r"^caught exception <class '[\w.]+'>: ")
# dnspython messages that name tokenizer internals
_REWORDED = (
    (re.compile(r'^expected EOL or EOF, got \d+ "(.*)"$'), r'unexpected "\1" where the record should end'),
    (re.compile(r"^Missing default TTL value$"), "no TTL here and no $TTL or SOA before it to take one from"),
)


class InputVanished(ZoneFileError):
    """The file was there a moment ago (a file event, a directory listing) and is gone now."""


@dataclass(frozen=True)
class CheckedZone:
    """A zone that passed every check, as text ready for the signer."""

    name: str  # lowercase, no trailing dot; the root zone is "."
    text: str  # one RR per line, absolute names, TTL and class on each line, SOA first
    serial: int
    records: int  # RRs in `text`
    stripped: int  # signer-made RRs removed under the "strip" policy


def _error(place: str, message: str) -> ZoneFileError:
    """The one-line error: PLACE (file or file:line), then a sentence."""
    text = f"{place}: {message}" if message.endswith(".") else f"{place}: {message}."
    return ZoneFileError(re.sub(r"[\r\n]+", " ", text))


def zone_name_from_filename(filename: str) -> str | None:
    """Zone name for a file in an input directory, or None for files that are not zones.

    "example.com" and "example.com.zone" both name example.com (so a zone in the .zone TLD needs the
    suffix: "nic.zone.zone"). Hidden files and editor leftovers are None, as is anything that is not a
    valid zone name.
    """
    base = Path(filename).name
    if not base or base.startswith((".", "#")) or base == _VIM_PROBE:
        return None
    if base.lower().endswith(_TEMP_SUFFIXES):
        return None
    if base.lower().endswith(".zone") and len(base) > len(".zone"):
        base = base[: -len(".zone")]
    try:
        return normalize_zone_name(base)
    except ZoneFileError:
        return None


def check_zone_file(
    path: Path,
    zone: str,
    *,
    include_root: Path | None = None,
    dnssec_records: DnssecPolicy = "refuse",
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_records: int = DEFAULT_MAX_RECORDS,
    confine_to: Path | None = None,
) -> CheckedZone:
    """Check the zone file at `path` for `zone`; raise ZoneFileError (message starts FILE:LINE:) if bad.

    $INCLUDE is allowed for files inside `include_root` (default: the file's directory); relative include
    paths are taken relative to it, as BIND takes them relative to its directory. `max_bytes` bounds the
    file and its includes together, `max_records` the records they hold ($GENERATE counted before it
    expands). With `confine_to` (a watched input directory) `path` may be a symbolic link only to a file
    inside that directory; one pointing elsewhere is refused without opening its target.
    """
    name = normalize_zone_name(zone)
    source = str(path)
    if confine_to is not None:
        path = confined_path(path, confine_to)
    text, size = _read_text(path, source, source, max_bytes, max_bytes, nofollow=confine_to is not None)
    root = include_root if include_root is not None else path.parent
    return _check(
        text,
        name,
        source=source,
        include_root=root,
        policy=dnssec_records,
        budget=max_bytes - size,
        max_bytes=max_bytes,
        max_records=max_records,
        self_path=path.resolve(),
    )


def check_zone_text(
    text: str,
    zone: str,
    *,
    source: str,
    include_root: Path | None = None,
    dnssec_records: DnssecPolicy = "refuse",
    max_records: int = DEFAULT_MAX_RECORDS,
) -> CheckedZone:
    """The checks of check_zone_file on text; `source` names it in errors. $INCLUDE needs include_root."""
    name = normalize_zone_name(zone)
    text = text.removeprefix("\ufeff")
    _check_text_chars(text, source)
    return _check(
        text,
        name,
        source=source,
        include_root=include_root,
        policy=dnssec_records,
        budget=DEFAULT_MAX_BYTES,
        max_bytes=DEFAULT_MAX_BYTES,
        max_records=max_records,
        self_path=None,
    )


def verify_zone_text(text: str, zone: str, *, source: str, max_records: int = DEFAULT_MAX_RECORDS) -> None:
    """The checks of check_zone_text (no $INCLUDE, signer records refused), without writing the text
    out again: for a node that checks a text it was sent and then stores that text as it is. The
    rewrite is a fifth of a check's time (a 1,000-record zone: 0.1 s in all)."""
    name = normalize_zone_name(zone)
    text = text.removeprefix("\ufeff")
    _check_text_chars(text, source)
    _read_zone(
        text, name, source=source, include_root=None, policy="refuse", budget=DEFAULT_MAX_BYTES,
        max_bytes=DEFAULT_MAX_BYTES, max_records=max_records, self_path=None,
    )  # fmt: skip


# --- reading files ------------------------------------------------------------------------------------


def confined_path(path: Path, root: Path) -> Path:
    """What to open for `path`, a file in the watched input directory `root`.

    A symbolic link counts only when its target resolves inside `root`; then its target is returned
    (to be opened without following links, so a link swapped in after this check fails to open). A
    link pointing anywhere else is refused here, before its target is opened or read.
    """
    try:
        st = path.lstat()
    except FileNotFoundError:
        raise InputVanished(f"{path}: no such file (it vanished before it could be read).") from None
    except OSError as e:
        raise _error(str(path), f"cannot read: {e.strerror}") from None
    if not stat.S_ISLNK(st.st_mode):
        return path
    target = Path(os.path.realpath(path))
    if not target.is_relative_to(root.resolve()):
        raise _error(str(path), "symbolic link to a file outside the input directory; refused")
    return target


def _read_text(
    path: Path, where: str, display: str, limit: int, max_bytes: int, *, nofollow: bool = False
) -> tuple[str, int]:
    """Read a zone file as text and return it with its size in bytes.

    The size is checked on the open file before anything is read, and at most one byte past the limit
    is read (the file may grow meanwhile). O_NONBLOCK keeps a FIFO named like a zone from hanging the
    open; `nofollow` refuses a symbolic link in the last component. Problems with the file itself are
    reported at `where` (the file, or the $INCLUDE line naming it); problems inside it (encoding) at
    `display`:LINE.
    """
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | (os.O_NOFOLLOW if nofollow else 0)
    too_big = _error(where, f"bigger than the limit of {max_bytes} bytes (zone file with its includes)")
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise InputVanished(str(_error(where, "no such file"))) from None
    except OSError as e:
        if nofollow and stat.S_ISLNK(_lstat_mode(path)):
            raise _error(where, "became a symbolic link while it was read; refused") from None
        raise _error(where, f"cannot read: {e.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise _error(where, "not a regular file")
        if st.st_size > limit:
            raise too_big
        with open(fd, "rb", closefd=False) as f:
            # Read one byte past the limit: the file may have grown since fstat().
            data = f.read(limit + 1)
    except OSError as e:
        raise _error(where, f"cannot read: {e.strerror}") from None
    finally:
        os.close(fd)
    if len(data) > limit:
        raise too_big
    try:
        text = data.decode("utf-8-sig")  # a leading BOM from a Windows editor is not part of the zone
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise _error(f"{display}:{line}", f"not UTF-8 text (byte 0x{data[e.start]:02x})") from None
    _check_text_chars(text, display)
    return text, len(data)


def _lstat_mode(path: Path) -> int:
    try:
        return path.lstat().st_mode
    except OSError:
        return 0


def _check_text_chars(text: str, display: str) -> None:
    nul = text.find("\0")
    if nul >= 0:
        line = text.count("\n", 0, nul) + 1
        raise _error(f"{display}:{line}", "NUL byte; this is not a text file")


# --- parsing ------------------------------------------------------------------------------------------


class _LineTokenizer(dns.tokenizer.Tokenizer):
    """A tokenizer that knows on which line its last token was.

    dnspython's line_number has already moved on when a token ended at a newline, so its errors and
    its where() point one line too far for many mistakes.
    """

    def __init__(self, text: str, filename: str) -> None:
        super().__init__(text, filename)
        self.token_line = 1

    def get(self, want_leading: bool = False, want_comment: bool = False) -> dns.tokenizer.Token:
        pending = self.ungotten_token
        token = super().get(want_leading, want_comment)
        if token is not pending:
            # A token that ended at a newline has read it (EOL) or read and pushed it back.
            ended_at_newline = token.ttype == dns.tokenizer.EOL or self.ungotten_char == "\n"
            self.token_line = self.line_number - 1 if ended_at_newline else self.line_number
        return token


class _RR:
    __slots__ = ("file", "line", "name", "rdata", "ttl")

    def __init__(self, name: dns.name.Name, ttl: int, rdata: dns.rdata.Rdata, file: str, line: int) -> None:
        self.name = name
        self.ttl = ttl
        self.rdata = rdata
        self.file = file
        self.line = line


class _Rdatas:
    """The distinct rdatas of one RRset. Most RRsets have one RR; only a second one pays for hashing
    (dnspython hashes an rdata by converting it to wire form)."""

    __slots__ = ("first", "more")

    def __init__(self, rdata: dns.rdata.Rdata) -> None:
        self.first = rdata
        self.more: set[dns.rdata.Rdata] | None = None

    def has(self, rdata: dns.rdata.Rdata) -> bool:
        return rdata == self.first if self.more is None else rdata in self.more

    def add(self, rdata: dns.rdata.Rdata) -> None:
        if self.more is None:
            self.more = {self.first}
        self.more.add(rdata)


class _Collector:
    """Receives each RR as it is read and applies the per-record rules right away, so the first problem
    in file order is the one reported."""

    def __init__(self, apex: dns.name.Name, zone: str, policy: DnssecPolicy, max_records: int) -> None:
        self.apex = apex
        self.zone = zone
        self.policy = policy
        self.max_records = max_records
        self.read = 0  # records read so far, repeats and stripped ones included
        self.where = ("", 0)  # file and line of the record being read, set by the reader
        self.rrs: list[_RR] = []
        self.soa: _RR | None = None
        self.ds: list[_RR] = []
        self.stripped = 0
        # name -> (type, covers) -> rdatas, for duplicates, singletons and CNAME conflicts
        self.nodes: dict[dns.name.Name, dict[tuple[_RT, _RT], _Rdatas]] = {}

    def fail(self, message: str) -> ZoneFileError:
        file, line = self.where
        return _error(f"{file}:{line}", message)

    def _check_owner(self, name: dns.name.Name, rdtype: dns.rdatatype.RdataType) -> None:
        if rdtype != _RT.SOA:
            if not name.is_subdomain(self.apex):
                raise self.fail(f"{name.to_text()} is outside zone {self.zone}")
            return
        if name != self.apex:
            if name.is_subdomain(self.apex):
                raise self.fail(f"SOA at {name.to_text()} is not at the apex of zone {self.zone}")
            # Checked before "outside zone": a file for another zone most likely starts with its SOA.
            raise self.fail(f"origin mismatch: the file is for {_zone_text(name)}, asked for {self.zone}")
        if self.soa is not None:
            first = f"{self.soa.file}:{self.soa.line}"
            raise self.fail(f"second SOA for zone {self.zone} (the first is at {first})")

    def over_limit(self, more: int) -> bool:
        return self.read + more > self.max_records

    def add(self, name: dns.name.Name, ttl: int, rdata: dns.rdata.Rdata) -> None:
        if self.over_limit(1):
            raise self.fail(f"more than {self.max_records} records (the [input] max_records limit)")
        self.read += 1
        rdtype = rdata.rdtype
        self._check_owner(name, rdtype)
        if rdtype in _SIGNER_TYPES:
            if self.policy == "strip":
                self.stripped += 1
                return
            raise self.fail(
                f"{dns.rdatatype.to_text(rdtype)} at {name} is made by the signer; "
                f"zone {self.zone} must be unsigned"
            )
        if rdtype == _RT.DS and name == self.apex:
            raise self.fail(f"DS at the apex of zone {self.zone}; it belongs in the parent zone")

        node = self.nodes.setdefault(name, {})
        key = (rdtype, rdata.covers())
        same = node.get(key)
        if same is not None:
            if same.has(rdata):
                return  # a repeated RR is the same RR; the signer would merge it too
            if dns.rdatatype.is_singleton(rdtype):
                raise self.fail(f"more than one {dns.rdatatype.to_text(rdtype)} at {name}")
            same.add(rdata)
        else:
            # As in dnspython: a CNAME may share its name only with "neutral" types (RFC 2181 10.1).
            kind = _node_kind(key)
            if kind != _NodeKind.NEUTRAL:
                other = _NodeKind.CNAME if kind == _NodeKind.REGULAR else _NodeKind.REGULAR
                if any(_node_kind(k) == other for k in node):
                    raise self.fail(f"{name} has a CNAME and other data")
            node[key] = _Rdatas(rdata)

        rr = _RR(name, ttl, rdata, *self.where)
        if rdtype == _RT.SOA:
            self.soa = rr
        elif rdtype == _RT.DS:
            self.ds.append(rr)  # whether it sits at a delegation is known only at the end
        self.rrs.append(rr)


def _node_kind(key: tuple[_RT, _RT]) -> dns.node.NodeKind:
    return dns.node.NodeKind.classify(*key)


class _Sink(dns.transaction.Transaction):
    """The transaction dnspython's reader writes to: hands each RR to the collector, keeps nothing."""

    def __init__(self, collector: _Collector) -> None:
        super().__init__(_RootManager())
        self.collector = collector

    def add(self, *args: Any) -> None:
        name, ttl, rdata = args  # the reader always calls add(name, ttl, rdata)
        self.collector.add(name, ttl, rdata)


class _RootManager(dns.transaction.TransactionManager):
    # The reader drops records that are not below its zone origin without a word. With the root as its
    # origin it drops nothing, and the collector reports out-of-zone records instead.
    def origin_information(self) -> tuple[dns.name.Name | None, bool, dns.name.Name | None]:
        return dns.name.root, False, dns.name.root

    def get_class(self) -> dns.rdataclass.RdataClass:
        return dns.rdataclass.IN


# Reader state that an $INCLUDE saves and restores, as dnspython's own loop does.
_SAVED_STATE = (
    "tok",
    "current_origin",
    "last_name",
    "last_ttl",
    "last_ttl_known",
    "default_ttl",
    "default_ttl_known",
    "default_ttl_from_soa",
)


# dnspython's rdata helpers that turn one field's text into a value, and what that value must be.
_FIELD_KINDS = {"_as_ipv4_address": "an IPv4 address", "_as_ipv6_address": "an IPv6 address"}


def unparsed_why(tb: TracebackType | None) -> str:
    """Why dnspython refused a record it reports only as "Text input is malformed.": the record's
    type and, for an address field, the value (`'192.0.2.300' is not an IPv4 address`). Read from
    the frames of the failed parse, as dnspython 2.x does not say it in the exception."""
    rdtype: object = None
    field: str | None = None
    while tb is not None:
        frame = tb.tb_frame
        if frame.f_code.co_name == "from_text" and "rdtype" in frame.f_locals and rdtype is None:
            rdtype = frame.f_locals["rdtype"]
        kind = _FIELD_KINDS.get(frame.f_code.co_name)
        if kind is not None and isinstance(frame.f_locals.get("value"), str):
            field = f"{frame.f_locals['value']!r} is not {kind}"
        tb = tb.tb_next
    what = "this record" if rdtype is None else f"this {dns.rdatatype.to_text(rdtype)} record"  # type: ignore[arg-type]
    return f"cannot parse {what}: {field}" if field else f"cannot parse {what}"


class _Reader(dns.zonefile.Reader):
    def __init__(
        self,
        tok: _LineTokenizer,
        collector: _Collector,
        *,
        include_root: Path | None,
        budget: int,
        max_bytes: int,
        self_path: Path | None,
    ) -> None:
        super().__init__(tok, dns.rdataclass.IN, _Sink(collector))
        self.current_origin = collector.apex
        self.last_name = collector.apex
        self.ltok = tok
        self.collector = collector
        self.include_root = include_root.resolve() if include_root is not None else None
        self.budget = budget
        self.max_bytes = max_bytes
        self.saved: list[tuple[dict[str, Any], _LineTokenizer, Path]] = []
        self.self_path = self_path

    def where(self) -> tuple[str, int]:
        return self.ltok.filename, self.ltok.token_line

    def error(self, message: str) -> ZoneFileError:
        file, line = self.where()
        return _error(f"{file}:{line}", message)

    def read(self) -> None:
        try:
            self._read()
        except dns.ttl.BadTTL as e:
            raise self.error(f"bad TTL: {_describe(e)}") from None
        except dns.exception.DNSException as e:
            raise self.error(_describe(e)) from None

    def _read(self) -> None:
        while True:
            token = self.tok.get(True, True)
            if token.is_eof():
                if not self.saved:
                    return
                state, self.ltok, _ = self.saved.pop()
                for attr, value in state.items():
                    setattr(self, attr, value)
            elif token.is_eol():
                continue
            elif token.is_comment():
                self.tok.get_eol()
            elif token.is_identifier() and token.value.startswith("$"):
                self._directive(token.value.upper())
            else:
                self.tok.unget(token)
                self._rr_line()

    def _rr_line(self) -> None:
        # The record's first token has just been read and pushed back: its line is the record's line.
        self.collector.where = self.where()
        try:
            super()._rr_line()
        except dns.exception.SyntaxError as e:
            if str(e) == dns.exception.SyntaxError.__doc__:
                # dnspython's bare "Text input is malformed.", mostly from rdata it could not parse
                raise self.error(unparsed_why(e.__traceback__)) from None
            if str(e) == "unbalanced parentheses":
                # Found only at the end of the file; the record that opened it is the place to look.
                file, line = self.collector.where
                raise _error(f"{file}:{line}", "'(' in this record is never closed") from None
            raise

    def _directive(self, directive: str) -> None:
        if directive == "$TTL":
            token = self.tok.get()
            if not token.is_identifier():
                raise self.error("$TTL needs a TTL")
            self.default_ttl = dns.ttl.from_text(token.value)
            self.default_ttl_known = True
            self.default_ttl_from_soa = False
            self.tok.get_eol()
        elif directive == "$ORIGIN":
            self.current_origin = self.tok.get_name(self.current_origin)
            self.tok.get_eol()
        elif directive == "$INCLUDE":
            self._include()
        elif directive == "$GENERATE":
            self.collector.where = self.where()  # every generated RR is on the $GENERATE line
            self._count_generate()
            self._generate_line()  # type: ignore[no-untyped-call]
        else:
            raise self.error(f"unknown directive {directive}")

    def _count_generate(self) -> None:
        """Refuse a $GENERATE whose range would take the zone past max_records, before it expands
        (`$GENERATE 0-4294967295 ...` is a 4-billion-record line). A range dnspython cannot read is left
        for it to report."""
        token = self.tok.get()
        self.tok.unget(token)
        if not token.is_identifier():
            return
        try:
            start, stop, step = dns.grange.from_text(token.value)
            count = len(range(start, stop + 1, step))
        except (dns.exception.DNSException, ValueError, AssertionError):
            return
        collector = self.collector
        if collector.over_limit(count):
            before = f" on top of the {collector.read} before it" if collector.read else ""
            raise self.error(
                f"$GENERATE {token.value} makes {count} records{before}, more than the limit of "
                f"{collector.max_records} (the [input] max_records limit)"
            )

    def _include(self) -> None:
        file, line = self.where()
        token = self.tok.get()
        if not (token.is_identifier() or token.is_quoted_string()) or not token.value:
            raise self.error("$INCLUDE needs a file name")
        name = token.value
        token = self.tok.get()
        origin: dns.name.Name | None
        if token.is_identifier():
            origin = dns.name.from_text(token.value, self.current_origin, self.tok.idna_codec)
            self.tok.get_eol()
        elif token.is_eol_or_eof():
            origin = self.current_origin
        else:
            raise self.error("bad origin in $INCLUDE")

        at = f"{file}:{line}: $INCLUDE {name}"
        if self.include_root is None:
            raise _error(at, "includes are not allowed here (no include root)")
        given = Path(name)
        path = given if given.is_absolute() else self.include_root / given
        resolved = path.resolve()
        if not resolved.is_relative_to(self.include_root):
            raise _error(at, f"outside the include root {self.include_root}")
        active = [p for _, _, p in self.saved] + ([self.self_path] if self.self_path else [])
        if resolved in active:
            raise _error(at, "includes itself (loop)")
        if len(self.saved) >= _MAX_INCLUDE_DEPTH:
            raise _error(at, f"includes nested more than {_MAX_INCLUDE_DEPTH} deep")
        # `resolved` has no links left: one swapped in since resolve() is not followed.
        text, size = _read_text(resolved, at, str(path), self.budget, self.max_bytes, nofollow=True)
        self.budget -= size

        state = {attr: getattr(self, attr) for attr in _SAVED_STATE if hasattr(self, attr)}
        self.saved.append((state, self.ltok, resolved))
        self.ltok = _LineTokenizer(text, str(path))
        self.tok = self.ltok
        self.current_origin = origin


def _describe(error: dns.exception.DNSException) -> str:
    """dnspython's message for a parse error, made to read as one plain sentence."""
    text = _CAUGHT_RE.sub("", str(error))
    if not text or text == dns.exception.SyntaxError.__doc__:
        return "syntax error"
    for pattern, replacement in _REWORDED:
        text = pattern.sub(replacement, text)
    return text


def _zone_text(name: dns.name.Name) -> str:
    return "." if name == dns.name.root else name.to_text(omit_final_dot=True).lower()


# --- the whole zone -----------------------------------------------------------------------------------


def _check(
    text: str,
    zone: str,
    *,
    source: str,
    include_root: Path | None,
    policy: DnssecPolicy,
    budget: int,
    max_bytes: int,
    max_records: int,
    self_path: Path | None,
) -> CheckedZone:
    collector = _read_zone(
        text, zone, source=source, include_root=include_root, policy=policy, budget=budget,
        max_bytes=max_bytes, max_records=max_records, self_path=self_path,
    )  # fmt: skip
    soa = collector.soa
    assert soa is not None  # _read_zone refuses a zone without one
    lines = [_rr_text(soa)]
    lines.extend(_rr_text(rr) for rr in collector.rrs if rr is not soa)
    serial = cast(dns.rdtypes.ANY.SOA.SOA, soa.rdata).serial
    return CheckedZone(
        name=zone,
        text="\n".join(lines) + "\n",
        serial=serial,
        records=len(lines),
        stripped=collector.stripped,
    )


def _read_zone(
    text: str,
    zone: str,
    *,
    source: str,
    include_root: Path | None,
    policy: DnssecPolicy,
    budget: int,
    max_bytes: int,
    max_records: int,
    self_path: Path | None,
) -> _Collector:
    """Every check, record by record and then of the whole zone; the records read, not rendered."""
    if policy not in ("refuse", "strip"):
        raise ValueError(f"dnssec_records must be 'refuse' or 'strip', not {policy!r}")
    apex = dns.name.root if zone == "." else dns.name.from_text(zone + ".")
    collector = _Collector(apex, zone, policy, max_records)
    reader = _Reader(
        _LineTokenizer(text, source),
        collector,
        include_root=include_root,
        budget=budget,
        max_bytes=max_bytes,
        self_path=self_path,
    )
    reader.read()

    for ds in collector.ds:
        if (_RT.NS, _RT.NONE) not in collector.nodes[ds.name]:
            raise _error(
                f"{ds.file}:{ds.line}", f"DS at {ds.name} is not at a delegation (no NS there) in zone {zone}"
            )
    if collector.soa is None:
        raise _error(source, f"no SOA for zone {zone}")
    if (_RT.NS, _RT.NONE) not in collector.nodes[apex]:
        raise _error(source, f"no NS at the apex of zone {zone}")
    return collector


def _rr_text(rr: _RR) -> str:
    rdata = rr.rdata
    if rdata.rdtype in _PRESENTATION_TYPES and not isinstance(rdata, dns.rdata.GenericRdata):
        return (
            f"{rr.name.to_text()} {rr.ttl} IN {dns.rdatatype.to_text(rdata.rdtype)} "
            f"{rdata.to_text(origin=None, relativize=False, chunksize=0)}"
        )
    generic = rdata.to_generic().to_text().rstrip()  # empty data gives a trailing blank
    return f"{rr.name.to_text()} {rr.ttl} IN TYPE{int(rdata.rdtype)} {generic}"
