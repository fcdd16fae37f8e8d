"""Compile, run and size a generated C library (host gcc, arm-none-eabi-gcc, qemu-arm).

Used by the generator (the export summary), the tests and tools/bench_c.py. Each step needs its
tool; `have()` says whether it is installed so callers can skip with a reason.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from kws.errors import ExportError

LIB_SRC = ("kws.c", "kws_features.c", "kws_model.c", "kws_tables.c", "kws_weights.c")
HARNESS_SRC = ("harness/harness.c", "harness/golden_data.c")
HOST_FLAGS = ["-O2", "-Wall", "-Wextra", "-Werror", "-std=c99", "-ffp-contract=off"]
ARM_FLAGS = ["-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16", "-Os", "-ffreestanding",
             "-std=c99", "-Wall", "-Wextra", "-Werror", "-ffp-contract=off", "-ffunction-sections",
             "-fdata-sections"]
TIMEOUT = 120


def have(tool: str) -> bool:
    return shutil.which(tool) is not None


def _run(cmd: list[str], cwd: Path, timeout: float = TIMEOUT) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise ExportError(f"{' '.join(cmd)} timed out after {timeout:.0f} s in {cwd}") from None


def _check(p: subprocess.CompletedProcess, what: str, cwd: Path) -> None:
    if p.returncode != 0:
        raise ExportError(f"{what} failed in {cwd} (exit {p.returncode}):\n{p.stdout}{p.stderr}".rstrip())


def host_build(out: Path, cc: str = "gcc", extra: list[str] | None = None, name: str = "harness") -> Path:
    """Build the host harness: gcc -O2 -Wall -Wextra -Werror -std=c99. Returns the executable."""
    out = Path(out).resolve()
    (out / "build").mkdir(exist_ok=True)
    exe = out / "build" / name
    cmd = [cc, *HOST_FLAGS, *(extra or []), "-o", str(exe), *LIB_SRC, *HARNESS_SRC, "harness/host_main.c"]
    _check(_run(cmd, out), "host harness build", out)
    return exe


def run_harness(cmd: list[str], cwd: Path, timeout: float = TIMEOUT) -> tuple[bool, str]:
    p = _run(cmd, cwd, timeout)
    text = p.stdout + p.stderr
    return p.returncode == 0 and "RESULT PASS" in text, text


def arm_build_objects(out: Path) -> list[Path]:
    out = Path(out).resolve()
    (out / "build").mkdir(exist_ok=True)
    objs = []
    for src in LIB_SRC:
        obj = out / "build" / (Path(src).stem + ".m4.o")
        _check(_run(["arm-none-eabi-gcc", *ARM_FLAGS, "-fstack-usage", "-c", src, "-o", str(obj)], out),
               f"arm-none-eabi-gcc {src}", out)
        objs.append(obj)
    return objs


@dataclass
class ArmSize:
    text: int
    rodata: int
    data: int
    bss: int
    state: int
    stack: int
    by_file: dict[str, int]

    @property
    def flash(self) -> int:
        return self.text + self.rodata + self.data  # .data's initial values live in flash too

    @property
    def ram(self) -> int:
        return self.data + self.bss + self.state + self.stack


def _sections(obj: Path, cwd: Path) -> dict[str, int]:
    p = _run(["arm-none-eabi-size", "-A", str(obj)], cwd)
    _check(p, "arm-none-eabi-size", cwd)
    sizes: dict[str, int] = {}
    for line in p.stdout.splitlines():
        m = re.match(r"^(\.\S+)\s+(\d+)\s+\d+", line)
        if m:
            sizes[m.group(1)] = sizes.get(m.group(1), 0) + int(m.group(2))
    return sizes


def arm_size(out: Path) -> ArmSize:
    """Cortex-M4 sizes of the library: flash = text + rodata (+ data init), RAM = data + bss +
    kws_state_t + stack (sum of all the library's stack frames: an upper bound on the deepest chain)."""
    out = Path(out).resolve()
    objs = arm_build_objects(out)
    tot = {"text": 0, "rodata": 0, "data": 0, "bss": 0}
    by_file = {}
    for obj in objs:
        s = _sections(obj, out)
        f = 0
        for name, n in s.items():
            key = ("text" if name.startswith(".text") else "rodata" if name.startswith(".rodata")
                   else "data" if name.startswith(".data") else "bss" if name.startswith(".bss") else None)
            if key:
                tot[key] += n
                if key in ("text", "rodata", "data"):
                    f += n
        by_file[obj.name.replace(".m4.o", ".c")] = f
    # sizeof(kws_state_t) as the ARM compiler lays it out: a .bss object of exactly that size
    probe = out / "build" / "state_probe.c"
    probe.write_text('#include "../kws.h"\nchar kws_state_probe[sizeof(kws_state_t)];\n')
    pobj = out / "build" / "state_probe.o"
    _check(_run(["arm-none-eabi-gcc", *ARM_FLAGS, "-fno-common", "-I.", "-c", str(probe), "-o", str(pobj)], out),
           "state size probe", out)
    state = sum(n for k, n in _sections(pobj, out).items() if k.startswith(".bss"))
    stack = 0
    for su in (out / "build").glob("*.m4.su"):
        for line in su.read_text().splitlines():
            m = re.search(r"\s(\d+)\s+\w+", line)
            if m:
                stack += int(m.group(1))
    return ArmSize(tot["text"], tot["rodata"], tot["data"], tot["bss"], state, stack, by_file)


def qemu_build(out: Path) -> Path:
    out = Path(out).resolve()
    (out / "build").mkdir(exist_ok=True)
    elf = out / "build" / "harness_m4.elf"
    cmd = ["arm-none-eabi-gcc", *ARM_FLAGS, "-nostdlib", "-static", "-Wl,--gc-sections", "-e", "_start",
           "-o", str(elf), *LIB_SRC, *HARNESS_SRC, "harness/qemu_start.c", "-lgcc"]
    _check(_run(cmd, out), "Thumb harness build", out)
    return elf


def example_build(out: Path) -> Path:
    """Compile examples/main.c for Cortex-M4 (-c: no board to link against)."""
    out = Path(out).resolve()
    (out / "build").mkdir(exist_ok=True)
    obj = out / "build" / "example_main.m4.o"
    _check(_run(["arm-none-eabi-gcc", *ARM_FLAGS, "-c", "examples/main.c", "-o", str(obj)], out),
           "example main loop build", out)
    return obj


def verify_all(out: Path) -> list[str]:
    """Host harness (must pass), Cortex-M4 sizes, the example, and the Thumb harness under qemu;
    returns summary lines, each saying what ran or why it was skipped."""
    out = Path(out).resolve()
    lines = []
    if have("gcc"):
        ok, text = run_harness([str(host_build(out))], out)
        if not ok:
            raise ExportError(f"the generated C library does not reproduce the Python reference "
                              f"(host harness in {out}):\n{text}")
        lines.append("  host harness (gcc -O2 -std=c99 -Wall -Wextra -Werror): PASS")
        lines += ["    " + ln for ln in text.splitlines() if ln.startswith(("features", "model", "stream"))]
    else:
        lines.append("  host harness: skipped (gcc not found)")
    if have("arm-none-eabi-gcc") and have("arm-none-eabi-size"):
        s = arm_size(out)
        example_build(out)
        lines.append(f"  Cortex-M4 (arm-none-eabi-gcc -Os, hard float): flash {s.flash} B "
                     f"(text {s.text} + rodata {s.rodata} + data {s.data}), RAM {s.ram} B "
                     f"(state {s.state} + data/bss {s.data + s.bss} + stack <= {s.stack}), plus the audio block")
        lines.append("    flash by file: " + ", ".join(f"{k} {v}" for k, v in s.by_file.items()))
        if have("qemu-arm"):
            ok, text = run_harness(["qemu-arm", "-cpu", "max", str(qemu_build(out))], out)
            if not ok:
                raise ExportError(f"the Thumb build fails the golden vectors under qemu-arm in {out}:\n{text}")
            lines.append("  Thumb harness under qemu-arm -cpu max: PASS")
        else:
            lines.append("  Thumb harness: skipped (qemu-arm not found)")
    else:
        lines.append("  Cortex-M4 size: skipped (arm-none-eabi-gcc not found)")
    return lines
