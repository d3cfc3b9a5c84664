# Runs in every kernel after 10-offline.py (IPython startup): namespace snapshots, taken and
# loaded *inside* the sandbox so the gateway never unpickles anything (gateway/threads/).
#
# A snapshot file is: MAGIC, one self-contained cloudpickle per user name, a JSON index, and
# the index's length (8 bytes, big-endian). Each name is its own pickle, so one that cannot be
# pickled (a generator, an open file, a lock) or is too large is skipped and named, not fatal.
# Modules are recorded by name and imported again. The gateway reaches these functions as
# ``sys.modules["_gateway_snapshots"]`` (never a name in the user's namespace); the settings
# come from the environment the gateway builds for the kernel.


def _gateway_snapshots():
    import hashlib
    import io
    import json
    import os
    import sys
    import time
    import types

    magic = b"GWSNAP1\n"
    # The working directory (/mnt/data) is where the kernel starts; the thread may chdir away,
    # and the gateway looks for these files here, not in the thread's cwd.
    start_cwd = os.getcwd()
    snapshot_file = os.path.join(start_cwd, ".gateway-snapshot")  # hidden from file scans
    # Left by a cell whose namespace changed: the gateway then runs ``flush`` (a hidden cell)
    # after it sent the cell's status, so the snapshot is not part of the cell's time.
    due_file = os.path.join(start_cwd, ".gateway-snapshot-due")
    shell = get_ipython()  # noqa: F821
    every_cell_below = int(os.environ.get("KERNEL_SNAPSHOT_EVERY_CELL_BELOW", "0"))
    default_limit = int(os.environ.get("KERNEL_SNAPSHOT_LIMIT", str(256 << 20)))
    module = types.ModuleType("_gateway_snapshots")
    # fingerprint: what the namespace looked like when last seen; keys: every key of the
    # namespace then (IPython's _i1, _1, ... included), for a C-speed check of new names.
    state = {"fingerprint": None, "keys": None, "digest": None, "due": False}
    # IPython's own names, and what a startup file left behind on purpose.
    ignored = {"In", "Out", "exit", "quit", "get_ipython"}

    missing = object()
    # The environment the kernel started with: what the thread changed in it is kept.
    start_environ = dict(os.environ)

    def thread_state(with_environment: bool) -> dict:
        """cwd and execution count; with the environment the thread set only for a full
        snapshot: after a cell (post_run_cell) os.environ still holds that cell's ``env``,
        values the gateway sets for one cell and must never write anywhere."""
        state = {"execution_count": shell.execution_count}
        try:
            state["cwd"] = os.getcwd()
        except OSError:  # the directory was deleted under the kernel
            pass
        if with_environment:
            changed = {k: v for k, v in os.environ.items() if start_environ.get(k) != v}
            unset = sorted(set(start_environ) - set(os.environ))
            if changed:
                state["environ"] = changed
            if unset:
                state["unset"] = unset
        return state

    def apply_state(state: dict, skipped: list) -> dict:
        """Bring back a snapshot's cwd, environment and execution count; what came back."""
        back = {}
        cwd = state.get("cwd")
        if isinstance(cwd, str) and cwd != os.getcwd():
            try:
                if cwd.startswith(start_cwd + os.sep):  # an empty directory is not a file
                    os.makedirs(cwd, exist_ok=True)     # the gateway keeps: made again
                os.chdir(cwd)
                back["cwd"] = cwd
            except OSError as exc:
                skipped.append({"name": "(working directory)", "reason": reason_of(exc)})
        environ = state.get("environ") or {}
        for name, value in environ.items():
            os.environ[name] = value
        for name in state.get("unset") or []:
            os.environ.pop(name, None)
        if environ or state.get("unset"):
            back["environment"] = sorted([*environ, *(state.get("unset") or [])])
        count = state.get("execution_count")
        if isinstance(count, int) and count > shell.execution_count:
            shell.execution_count = count
            back["execution_count"] = count
        return back

    def user_names() -> list:
        # Runs after every cell: the namespace also holds IPython's _i1, _1, ... (two names
        # per cell), so the first filter is one fast pass over the keys.
        namespace, hidden = shell.user_ns, shell.user_ns_hidden
        candidates = [name for name in namespace if name[:1] != "_" and name not in ignored]
        return [(name, namespace[name]) for name in candidates
                if hidden.get(name, missing) is not namespace[name]]

    def estimate(value) -> int:
        """A cheap lower bound of a value's pickled size, without pickling it."""
        nbytes = getattr(value, "nbytes", None)
        if isinstance(nbytes, int):
            return nbytes
        usage = getattr(value, "memory_usage", None)
        if usage is not None and hasattr(value, "columns"):  # a DataFrame
            try:
                return int(usage(index=True, deep=False).sum())
            except Exception:
                pass
        try:
            return sys.getsizeof(value)
        except Exception:
            return 0

    sized = (list, dict, set, bytearray)

    def shape_of(value):
        if isinstance(value, sized):
            return len(value)
        try:
            shape = getattr(value, "shape", None)  # arrays, DataFrames
        except Exception:
            return None
        return shape if isinstance(shape, tuple) else None

    def fingerprint(names: list) -> list:
        # Rebinding a name or growing a container (df["c"] = ..., list.append) changes it;
        # an in-place edit of an element does not (the next full snapshot catches that).
        return [(name, id(value), shape_of(value)) for name, value in names]

    class Hashing:
        """Passes pickle bytes to the file and a digest: an unchanged snapshot is not written
        again, so the gateway stores nothing new."""

        def __init__(self, raw) -> None:
            self.raw, self.hash = raw, hashlib.sha256()

        def write(self, data) -> int:
            self.hash.update(data)
            return self.raw.write(data)

    def seen(names: list) -> None:
        state["fingerprint"] = fingerprint(names)
        state["keys"] = set(shell.user_ns)

    def unchanged() -> bool:
        """The per-cell check, without a Python-level pass over the whole namespace."""
        known, namespace = state["keys"], shell.user_ns
        if known is None:
            return False
        new = namespace.keys() - known
        if any(name[:1] != "_" and name not in ignored for name in new):
            return False
        known |= new  # IPython's own history names
        for name, ident, shape in state["fingerprint"]:
            value = namespace.get(name, missing)
            if value is missing or id(value) != ident or shape_of(value) != shape:
                return False
        return True

    def reason_of(exc: BaseException) -> str:
        text = f"{type(exc).__name__}: {exc}"
        return text if len(text) <= 200 else text[:197] + "..."

    def write(path: str, names: list, limit: int, state: dict) -> dict:
        """Pickle ``names`` into ``path``; over ``limit`` the largest are skipped and named."""
        import cloudpickle

        modules, kept, skipped = {}, [], []
        for name, value in names:
            if isinstance(value, types.ModuleType):
                modules[name] = value.__name__
            elif isinstance(value, type(shell)) or value is shell:
                continue
            elif isinstance(value, io.IOBase):
                # cloudpickle would turn a file open for reading into a copy of its contents:
                # not the same object, so say it is gone instead.
                state_of = "closed" if value.closed else "open"
                skipped.append({"name": name, "reason": f"{state_of} file: open it again"})
            else:
                kept.append((name, value))
        # Too big to even try: skipped before any pickling.
        for name, value in list(kept):
            size = estimate(value)
            if size > limit:
                kept.remove((name, value))
                skipped.append({"name": name, "reason": f"too large ({size >> 20} MiB > "
                                f"snapshot limit {limit >> 20} MiB)"})
        entries, digests = [], {}
        with open(path, "wb") as out:
            out.write(magic)
            for name, value in kept:
                offset = out.tell()
                hashing = Hashing(out)
                try:
                    cloudpickle.dump(value, hashing, protocol=5)
                except Exception as exc:
                    out.seek(offset)
                    out.truncate()
                    skipped.append({"name": name, "reason": reason_of(exc)})
                    continue
                entries.append([name, offset, out.tell() - offset])
                digests[name] = hashing.hash.hexdigest()
            total = sum(length for _, _, length in entries)
            if total > limit:
                entries = drop_largest(out, entries, names, limit, skipped)
            index = json.dumps({"version": 1, "created": time.time(), "modules": modules,
                                "names": entries, "skipped": skipped,
                                "state": state}).encode()
            out.write(index)
            out.write(len(index).to_bytes(8, "big"))
        kept_names = [name for name, _, _ in entries]
        digest = json.dumps([modules, skipped, [[n, digests[n]] for n in kept_names], state],
                            sort_keys=True)
        return {"names": len(entries) + len(modules), "skipped": skipped,
                "bytes": os.path.getsize(path), "digest": digest}

    def drop_largest(out, entries: list, names: list, limit: int, skipped: list) -> list:
        """Skip the largest names until the rest fits, then write the rest again."""
        import cloudpickle

        total = sum(length for _, _, length in entries)
        for name, _, length in sorted(entries, key=lambda entry: -entry[2]):
            if total <= limit:
                break
            total -= length
            skipped.append({"name": name, "reason": f"too large ({length >> 20} MiB; the "
                            f"snapshot limit is {limit >> 20} MiB)"})
        gone = {item["name"] for item in skipped}
        values = dict(names)
        out.seek(len(magic))
        out.truncate()
        kept = []
        for name, _, _ in entries:
            if name not in gone:
                offset = out.tell()
                cloudpickle.dump(values[name], out, protocol=5)
                kept.append([name, offset, out.tell() - offset])
        return kept

    def save(limit: int, names: list | None = None, full: bool = True) -> dict:
        names = user_names() if names is None else names
        partial = snapshot_file + ".part"
        try:
            summary = write(partial, names, limit, thread_state(with_environment=full))
            digest = summary.pop("digest")
            if digest == state["digest"]:
                os.unlink(partial)  # the same as the last one, which the gateway has
                summary["unchanged"] = True
            else:
                os.replace(partial, snapshot_file)
                state["digest"] = digest
        except BaseException:
            try:
                os.unlink(partial)
            except OSError:
                pass
            raise
        seen(names)
        state["due"] = False  # a full snapshot (take) covers a per-cell one still due
        return summary

    def take(limit: int = default_limit) -> None:
        """A full snapshot now (hibernation, shutdown, `gateway thread snapshot`); prints one
        JSON line for the gateway."""
        try:
            summary = save(limit)
        except Exception as exc:
            summary = {"error": reason_of(exc)}
        print("@gateway-snapshot-report " + json.dumps(summary))

    def after_cell(result) -> None:
        """post_run_cell: when the namespace changed and is small enough, a snapshot is due.
        It runs before the kernel reports the cell done, so it only checks and leaves
        ``due_file``; the gateway runs ``flush`` once the cell's status is out."""
        if every_cell_below <= 0 or not result.info.store_history:
            return
        try:
            if unchanged():
                return
            names = user_names()
            if sum(estimate(value) for _, value in names) > every_cell_below:
                seen(names)  # too large to take after every cell; a full snapshot takes it
                return
            state["due"] = True
            with open(due_file, "wb"):
                pass
        except Exception:  # a snapshot must never break the user's cell
            pass

    def flush() -> None:
        """The snapshot ``after_cell`` found due (a hidden cell of the gateway; no output)."""
        if not state["due"]:
            return
        state["due"] = False
        try:
            # Without the environment, as every per-cell snapshot: a thread's own variables are
            # recorded by the full snapshots (hibernation), not a cell's one-off ``env``.
            save(every_cell_below, full=False)
        except Exception:  # as after_cell: the next change tries again
            state["fingerprint"] = state["keys"] = None

    def restore(path: str) -> None:
        """Load a snapshot the gateway placed at ``path`` (then delete it); prints one JSON
        line: how many names came back and which did not, with why."""
        import pickle

        loaded, skipped, back = 0, [], {}
        path = os.path.join(start_cwd, path)
        try:
            with open(path, "rb") as source:
                if source.read(len(magic)) != magic:
                    raise ValueError("not a snapshot file")
                source.seek(-8, os.SEEK_END)
                length = int.from_bytes(source.read(8), "big")
                source.seek(-8 - length, os.SEEK_END)
                index = json.loads(source.read(length))
                skipped = list(index.get("skipped", []))
                for name, module_name in index.get("modules", {}).items():
                    try:
                        shell.user_ns[name] = __import__(module_name, fromlist=["_"])
                        loaded += 1
                    except Exception as exc:
                        skipped.append({"name": name, "reason": reason_of(exc)})
                for name, offset, _ in index.get("names", []):
                    source.seek(offset)
                    try:
                        shell.user_ns[name] = pickle.load(source)
                        loaded += 1
                    except Exception as exc:
                        skipped.append({"name": name, "reason": reason_of(exc)})
                back = apply_state(index.get("state") or {}, skipped)
        except Exception as exc:
            skipped.append({"name": "*", "reason": f"snapshot unreadable: {reason_of(exc)}"})
        finally:
            try:
                os.unlink(path)
            except OSError:
                pass
        seen(user_names())
        print("@gateway-restore-report " + json.dumps({"names": loaded, "skipped": skipped,
                                                       "state": back}))

    module.take = take
    module.flush = flush
    module.restore = restore
    sys.modules[module.__name__] = module
    shell.events.register("post_run_cell", after_cell)


_gateway_snapshots()
del _gateway_snapshots
