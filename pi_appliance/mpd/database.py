"""The music database (MPD protocol: "The music database"): the tune store seen as directories
(``builtin/``, ``tunes/``) of songs. Tunes have one tag, Title."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pi_appliance.library import NoSuchTune
from pi_appliance.mpd.app import TAG_BY_LOWER
from pi_appliance.mpd.errors import Ack, MpdError
from pi_appliance.mpd.registry import Perm, Section, opt, rest
from pi_appliance.mpd.session import Session
from pi_appliance.mpd.songs import is_inline, iso, library_song, round_s

if TYPE_CHECKING:
    from pi_appliance.library import LibraryTune

SECTION = Section("database")
command = SECTION.command


# --- the directory tree, derived from the tunes' URIs ---


@dataclass
class Directory:
    path: str
    files: list[LibraryTune] = field(default_factory=list)
    dirs: dict[str, Directory] = field(default_factory=dict)

    def mtime(self) -> float:
        times = [t.mtime for t in self.files] + [d.mtime() for d in self.dirs.values()]
        return max(times, default=0.0)


def _tree(conn: Session) -> Directory:
    root = Directory("")
    for name in conn.library.directories():
        root.dirs.setdefault(name, Directory(name))
    for tune in conn.library.tunes():
        parts = tune.uri.split("/")
        node = root
        for i, part in enumerate(parts[:-1]):
            path = "/".join(parts[: i + 1])
            node = node.dirs.setdefault(part, Directory(path))
        node.files.append(tune)
    return root


def _find_dir(conn: Session, uri: str) -> Directory | None:
    node = _tree(conn)
    path = uri.strip("/")
    if not path:
        return node
    for part in path.split("/"):
        nxt = node.dirs.get(part)
        if nxt is None:
            return None
        node = nxt
    return node


def _lookup(conn: Session, uri: str) -> LibraryTune | None:
    try:
        return conn.library.lookup(uri)
    except NoSuchTune:
        return None


@command("lsinfo", Perm.READ, opt())
def lsinfo(conn: Session, uri: str = "") -> str:
    """Lists the contents of the directory URI (files, directories, then at the top level the
    stored playlists). When listing the root directory, this currently returns the list of stored
    playlists too."""
    out: list[str] = []
    node = _find_dir(conn, uri)
    if node is None:
        tune = _lookup(conn, uri)
        if tune is None:
            raise MpdError(Ack.NO_EXIST, "No such directory")
        library_song(conn, tune, out)
        return "".join(out)
    for tune in node.files:
        library_song(conn, tune, out)
    for d in node.dirs.values():
        out.append(f"directory: {d.path}\nLast-Modified: {iso(d.mtime())}\n")
    if not node.path:
        for p in conn.library.playlists():
            out.append(f"playlist: {p.name}\nLast-Modified: {iso(p.mtime)}\n")
    return "".join(out)


def _walk(conn: Session, node: Directory, out: list[str], info: bool) -> None:
    for tune in node.files:
        if info:
            library_song(conn, tune, out)
        else:
            out.append(f"file: {tune.uri}\n")
    for d in node.dirs.values():
        out.append(f"directory: {d.path}\n")
        if info:
            out.append(f"Last-Modified: {iso(d.mtime())}\n")
        _walk(conn, d, out, info)


def _listall(conn: Session, uri: str, info: bool) -> str:
    out: list[str] = []
    node = _find_dir(conn, uri)
    if node is None:
        tune = _lookup(conn, uri)
        if tune is None:
            raise MpdError(Ack.NO_EXIST, "No such directory")
        if info:
            library_song(conn, tune, out)
        else:
            out.append(f"file: {tune.uri}\n")
        return "".join(out)
    if node.path:
        out.append(f"directory: {node.path}\n")
        if info:
            out.append(f"Last-Modified: {iso(node.mtime())}\n")
    _walk(conn, node, out, info)
    return "".join(out)


@command("listall", Perm.READ, opt())
def listall(conn: Session, uri: str = "") -> str:
    """Lists all songs and directories in URI (recursively)."""
    return _listall(conn, uri, info=False)


@command("listallinfo", Perm.READ, opt())
def listallinfo(conn: Session, uri: str = "") -> str:
    """Same as listall, except it also returns metadata info in the same format as lsinfo."""
    return _listall(conn, uri, info=True)


# --- find/search: MPD's old "TYPE VALUE" pairs and the filter expressions of 0.21 ---

Predicate = Callable[["LibraryTune"], bool]


def _value(tune: LibraryTune, tag: str) -> str | None:
    if tag == "file":
        return tune.uri
    if tag == "Title":
        return tune.title or None
    return None  # tunes carry no other tag


def _compare(tag: str, op: str, value: str, fold: bool) -> Predicate:
    if op in ("=~", "!~"):
        raise MpdError(Ack.ARG, "Regular expressions are not supported")
    needle = value.casefold() if fold else value

    def pred(tune: LibraryTune) -> bool:
        if tag == "any":
            candidates = [v for v in (_value(tune, "file"), _value(tune, "Title")) if v is not None]
        elif tag == "base":
            base = value.strip("/")
            return not base or tune.uri.startswith(base + "/")
        else:
            v = _value(tune, tag)
            candidates = [v] if v is not None else []
        if op == "!=":
            return all((c.casefold() if fold else c) != needle for c in candidates) or not candidates
        hay = [c.casefold() if fold else c for c in candidates]
        if op == "contains":
            return any(needle in h for h in hay)
        return any(h == needle for h in hay)

    return pred


def _filter_tag(name: str) -> str:
    low = name.lower()
    if low in ("any", "file", "base"):
        return low
    tag = TAG_BY_LOWER.get(low)
    if tag is None:
        raise MpdError(Ack.ARG, f"Unknown filter type: {name}")
    return tag


class _Expr:
    """A recursive-descent parser of MPD filter expressions: ``(TAG OP 'VALUE')``, ``(!E)``,
    ``(E AND E ...)``. Bounded: the text is one request line (< 8 KiB)."""

    def __init__(self, text: str, fold: bool) -> None:
        self.s = text
        self.i = 0
        self.fold = fold

    def error(self, message: str) -> MpdError:
        return MpdError(Ack.ARG, message)

    def ws(self) -> None:
        while self.i < len(self.s) and self.s[self.i] in " \t":
            self.i += 1

    def parse(self, depth: int = 0) -> Predicate:
        if depth > 32:
            raise self.error("Filter expression is too deep")
        self.ws()
        if self.i >= len(self.s) or self.s[self.i] != "(":
            raise self.error("'(' expected")
        self.i += 1
        self.ws()
        if self.s[self.i : self.i + 1] == "!":
            self.i += 1
            inner = self.parse(depth + 1)
            self.close()
            return lambda t: not inner(t)
        if self.s[self.i : self.i + 1] == "(":
            parts = [self.parse(depth + 1)]
            while True:
                self.ws()
                if self.s.startswith("AND", self.i):
                    self.i += 3
                    parts.append(self.parse(depth + 1))
                    continue
                break
            self.close()
            return lambda t: all(p(t) for p in parts)
        start = self.i
        while self.i < len(self.s) and (self.s[self.i].isalnum() or self.s[self.i] in "_-"):
            self.i += 1
        tag = _filter_tag(self.s[start : self.i])
        self.ws()
        op = None
        for candidate in ("==", "!=", "=~", "!~", "contains"):
            if self.s.startswith(candidate, self.i):
                op = candidate
                self.i += len(candidate)
                break
        if tag == "base":
            op = "=="
        if op is None:
            raise self.error("Unknown filter operator")
        self.ws()
        value = self.string()
        self.close()
        return _compare(tag, op, value, self.fold)

    def string(self) -> str:
        if self.i >= len(self.s) or self.s[self.i] not in "'\"":
            raise self.error("Quoted string expected")
        quote = self.s[self.i]
        self.i += 1
        out = []
        while self.i < len(self.s) and self.s[self.i] != quote:
            if self.s[self.i] == "\\" and self.i + 1 < len(self.s):
                self.i += 1
            out.append(self.s[self.i])
            self.i += 1
        if self.i >= len(self.s):
            raise self.error("Closing quote not found")
        self.i += 1
        return "".join(out)

    def close(self) -> None:
        self.ws()
        if self.s[self.i : self.i + 1] != ")":
            raise self.error("')' expected")
        self.i += 1


def _parse_filter(args: list[str], fold: bool) -> tuple[Predicate, list[str]]:
    """The filter and what is left (``sort X``, ``window A:B``, ``group X``)."""
    preds: list[Predicate] = []
    i = 0
    while i < len(args):
        a = args[i]
        if a.startswith("("):
            e = _Expr(a, fold)
            preds.append(e.parse())
            if e.i != len(a):
                raise MpdError(Ack.ARG, "Unparsed garbage after expression")
            i += 1
            continue
        if a.lower() in ("sort", "window", "group"):
            break
        if i + 1 >= len(args):
            raise MpdError(Ack.ARG, "Incorrect number of filter arguments")
        tag = a.lower()
        if tag not in ("any", "file", "base", "filename") and tag not in TAG_BY_LOWER:
            raise MpdError(Ack.ARG, "Unknown filter type")
        op = "contains" if fold else "=="  # old-style search matches substrings
        preds.append(_compare(_filter_tag("file" if tag == "filename" else tag), op, args[i + 1], fold))
        i += 2
    if not preds:
        raise MpdError(Ack.ARG, "Incorrect number of filter arguments")
    return (lambda t: all(p(t) for p in preds)), args[i:]


def _window(rest_args: list[str], tunes: list[LibraryTune]) -> list[LibraryTune]:
    from pi_appliance.mpd.registry import RANGE

    i = 0
    while i + 1 < len(rest_args):
        key, val = rest_args[i].lower(), rest_args[i + 1]
        if key == "sort":
            tag = val.lstrip("-")
            tunes = sorted(tunes, key=lambda t: _value(t, _filter_tag(tag)) or "", reverse=val.startswith("-"))
        elif key == "window":
            start, end = RANGE(val)
            tunes = tunes[start:end]
        i += 2
    return tunes


def _search(conn: Session, args: list[str], fold: bool) -> list[LibraryTune]:
    pred, rest_args = _parse_filter(args, fold)
    return _window(rest_args, [t for t in conn.library.tunes() if pred(t)])


@command("find", Perm.READ, rest(at_least=1))
def find(conn: Session, args: list[str]) -> str:
    """Search the database for songs matching FILTER (exact, case-sensitive)."""
    out: list[str] = []
    for t in _search(conn, args, fold=False):
        library_song(conn, t, out)
    return "".join(out)


@command("search", Perm.READ, rest(at_least=1))
def search(conn: Session, args: list[str]) -> str:
    """Search the database for songs matching FILTER (case-insensitive, substrings)."""
    out: list[str] = []
    for t in _search(conn, args, fold=True):
        library_song(conn, t, out)
    return "".join(out)


@command("findadd", Perm.ADD, rest(at_least=1))
def findadd(conn: Session, args: list[str]) -> None:
    """Search the database for songs matching FILTER and add them to the queue."""
    for t in _search(conn, args, fold=False):
        conn.player.add(t.uri)


@command("searchadd", Perm.ADD, rest(at_least=1))
def searchadd(conn: Session, args: list[str]) -> None:
    """Search the database for songs matching FILTER (case-insensitive) and add them to the queue."""
    for t in _search(conn, args, fold=True):
        conn.player.add(t.uri)


@command("count", Perm.READ, rest(at_least=1))
def count(conn: Session, args: list[str]) -> str:
    """Count the number of songs and their total playtime in the database matching FILTER."""
    tunes = _search(conn, args, fold=False)
    playtime = sum(t.duration_us for t in tunes) / 1e6
    return f"songs: {len(tunes)}\nplaytime: {round_s(playtime)}\n"


@command("list", Perm.READ, rest(at_least=1))
def list_(conn: Session, args: list[str]) -> str:
    """Lists unique tags values of the specified type. TYPE can be any tag supported by MPD or
    ``file``. Tunes have titles only: other tags list one empty value, as MPD does for songs
    without that tag."""
    kind = args[0].lower()
    if kind != "file" and kind not in TAG_BY_LOWER:
        raise MpdError(Ack.ARG, f"Unknown tag type: {args[0]}")
    tag = "file" if kind == "file" else TAG_BY_LOWER[kind]
    filt = list(args[1:])
    cut = next((i for i, a in enumerate(filt) if a.lower() == "group"), len(filt))
    tunes = conn.library.tunes()
    if filt[:cut]:
        pred, _ = _parse_filter(filt[:cut], fold=False)
        tunes = [t for t in tunes if pred(t)]
    if tag == "file":
        return "".join(f"file: {t.uri}\n" for t in tunes)
    values = sorted({_value(t, tag) or "" for t in tunes})
    return "".join(f"{tag}: {v}\n" for v in values)


@command("update", Perm.CONTROL, opt())
def update(conn: Session, uri: str = "") -> str:
    """Updates the music database: re-reads the tune store. Returns the job id at once; as in
    MPD the job runs in the background: ``update`` when it starts, ``updating_db`` in status while
    it runs, ``update`` again when it ends (and ``database`` when something changed)."""
    return _update(conn)


@command("rescan", Perm.CONTROL, opt())
def rescan(conn: Session, uri: str = "") -> str:
    """Same as update, but also rescans unmodified files."""
    return _update(conn)


def _update(conn: Session) -> str:
    return f"updating_db: {conn.app.start_update()}\n"


@command("readpicture", Perm.READ, str, str)
def readpicture(conn: Session, uri: str, offset: str) -> None:
    """Locate a picture for the given song and return a chunk of the image file. Tunes have no
    pictures: an empty reply, which clients read as "no picture"."""
    if not is_inline(uri) and _lookup(conn, uri) is None:
        raise MpdError(Ack.NO_EXIST, "No such song")


@command("albumart", Perm.READ, str, str)
def albumart(conn: Session, uri: str, offset: str) -> None:
    """Locate album art for the given song. Tunes have none."""
    raise MpdError(Ack.NO_EXIST, "No file exists")
