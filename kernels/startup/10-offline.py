# Runs in every kernel after 00-gateway.py (IPython startup), and as the `pip` on the kernel's
# PATH. The sandbox has no network, so nothing can be installed: a model that reaches for a
# package should hear that at once, with what it can use instead, not wait for pip's retries.
# Also: tqdm's notebook bars are ipywidgets, which no client of the gateway renders; they
# become text bars, which the gateway collapses to their last state.
# Everything lives inside one function (closures, not globals), so a cell that rebinds a name
# cannot break the hooks; only standard-library modules are imported, to keep start-up flat.


def _gateway_offline(mode: str) -> int | None:
    import importlib.abc
    import importlib.machinery
    import importlib.util
    import os
    import re
    import sys

    def metadata():
        """importlib.metadata (email, zipfile, csv, ...), loaded only when an answer needs it."""
        import importlib.metadata

        return importlib.metadata

    no_network = "cannot be installed: no network"

    def image_packages() -> list[str]:
        """What the kernel image was built with: the gateway's `kernel` extra, if installed."""
        try:
            requires = metadata().requires("code-interpreter-gateway") or []
        except metadata().PackageNotFoundError:
            return []
        names = [re.split(r"[\s;<>=!~\[(]", r, maxsplit=1)[0] for r in requires
                 if re.search(r"""extra\s*==\s*["']kernel["']""", r)]
        return [name for name in names if installed_version(name)]

    def installed_version(name: str) -> str | None:
        try:
            return metadata().version(name)
        except (metadata().PackageNotFoundError, ValueError):
            return None

    def not_installed(name: str) -> str:
        names = image_packages()
        listing = ", ".join(names) if names else "see `pip list`"
        return f"`{name}` is not installed in this sandbox and {no_network}; installed: {listing}"

    def answer_install(args: list[str]) -> str:
        """One line per requested package: already there (use it), or not and why."""
        wanted, skip_next = [], False
        for arg in args:
            if skip_next:
                skip_next = False
            elif arg in ("-r", "-c", "-e", "-i", "-t", "--requirement", "--constraint",
                         "--editable", "--index-url", "--extra-index-url", "--target",
                         "--prefix", "--root", "-f", "--find-links"):
                skip_next = True
            elif not arg.startswith("-") and (match := re.match(r"[A-Za-z0-9][\w.-]*", arg)):
                wanted.append(match.group(0))
        lines = []
        for name in dict.fromkeys(wanted):
            version = installed_version(name)
            lines.append(f"`{name}` is already installed ({version}): import it." if version
                         else not_installed(name))
        return "\n".join(lines) or f"pip: packages {no_network}."

    def pip_command(args: list[str]) -> int:
        """`pip ...` in a shell, answered from the installed metadata: real pip needs a network
        to install and cannot even start here (it probes host files the sandbox hides)."""
        command = next((arg for arg in args if not arg.startswith("-")), "")
        rest = args[args.index(command) + 1:] if command else []
        if command in ("install", "download", "wheel"):
            print(answer_install(rest), file=sys.stderr)
            return 1
        dists = sorted({d.metadata["Name"]: d.version
                        for d in metadata().distributions()}.items(),
                       key=lambda item: item[0].lower())
        if command == "list":
            width = max(len(name) for name, _ in dists)
            print(f"{'Package':{width}} Version\n{'-' * width} -------")
            print("\n".join(f"{name:{width}} {version}" for name, version in dists))
        elif command == "freeze":
            print("\n".join(f"{name}=={version}" for name, version in dists))
        elif command == "show" and rest:
            for name in (arg for arg in rest if not arg.startswith("-")):
                try:
                    meta = metadata().metadata(name)
                except metadata().PackageNotFoundError:
                    print(f"WARNING: Package(s) not found: {name}", file=sys.stderr)
                    return 1
                requires = metadata().requires(name) or []
                print(f"Name: {meta['Name']}\nVersion: {meta['Version']}\n"
                      f"Summary: {meta['Summary']}\nRequires: "
                      + ", ".join(r.split(";")[0] for r in requires if "extra ==" not in r))
        else:
            print(f"pip {command}: not available in this sandbox (no network, packages are "
                  "read-only); `pip list` and `pip show NAME` tell what is installed.",
                  file=sys.stderr)
            return 1
        return 0

    if mode == "shim":
        return pip_command(sys.argv[2:])

    shell = get_ipython()  # noqa: F821
    here = sys._getframe().f_code.co_filename  # this file, where IPython's startup found it
    # With egress (15-egress.py), the real pip installs through the proxy; the note on a
    # missing module still helps.
    egress = bool(os.environ.get("KERNEL_EGRESS_SOCKET"))
    if egress:
        no_network = "may be installed with `pip install` if the operator's egress allows it"

    # `!pip` and subprocesses find our pip first; `python -m pip` fails fast instead of retrying.
    import tempfile

    def install_shims() -> None:
        shim_dir = tempfile.mkdtemp(prefix="gateway-bin-")
        launcher = (f"#!/bin/sh\nexec {sys.executable} -I -c 'import sys; exec(compile("
                    f"open(sys.argv[1]).read(), sys.argv[1], \"exec\"), "
                    f"{{\"__name__\": \"__pip_shim__\"}})' {here} \"$@\"\n")
        for name in ("pip", "pip3", f"pip3.{sys.version_info.minor}"):
            path = os.path.join(shim_dir, name)
            with open(path, "w") as shim:
                shim.write(launcher)
            os.chmod(path, 0o755)
        os.environ["PATH"] = shim_dir + os.pathsep + os.environ.get("PATH", "")
        os.environ["PIP_NO_INDEX"] = "1"
        os.environ["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"

        def pip_magic(line: str) -> None:
            """%pip (and a bare `pip install x` line, through automagic)."""
            args = line.split()
            if args and args[0] in ("install", "download", "wheel"):
                print(answer_install(args[1:]))
            else:
                shell.system(f"pip {line}")

        shell.register_magic_function(pip_magic, "line", "pip")

    if not egress:
        install_shims()

    def explain_missing_module(shell, etype, value, tb, tb_offset=None):
        """Adds one line under `ModuleNotFoundError: No module named 'foo'` when `foo` is not
        installed at all (a missing submodule of an installed package is a different error)."""
        try:
            top = (getattr(value, "name", None) or "").partition(".")[0]
            if top and importlib.util.find_spec(top) is None:
                note = not_installed(top)
                if note not in getattr(value, "__notes__", []):
                    value.add_note(note)
        except Exception:  # never let the explanation hide the error itself
            pass
        shell.showtraceback((etype, value, tb), tb_offset=tb_offset)

    shell.set_custom_exc((ModuleNotFoundError,), explain_missing_module)

    class TextProgressBars(importlib.abc.MetaPathFinder, importlib.abc.Loader):
        """tqdm.notebook (and so tqdm.auto) gives text bars: runs the real module, then swaps
        its classes for tqdm.std's; a real IProgress stays, a missing one no longer warns."""

        def find_spec(self, name, path, target=None):
            if name != "tqdm.notebook":
                return None
            spec = importlib.machinery.PathFinder.find_spec(name, path)
            if spec is not None and spec.loader is not None:
                self.real = spec.loader
                spec.loader = self
            return spec

        def create_module(self, spec):
            return self.real.create_module(spec)

        def exec_module(self, module):
            self.real.exec_module(module)
            from tqdm.std import tqdm, trange

            module.tqdm = module.tqdm_notebook = tqdm
            module.trange = module.tnrange = trange
            module.IProgress = module.IProgress or True

    sys.meta_path.insert(0, TextProgressBars())
    return None


if __name__ == "__pip_shim__":
    raise SystemExit(_gateway_offline("shim"))
_gateway_offline("kernel")
del _gateway_offline
