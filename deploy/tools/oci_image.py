"""Packages the filter as an OCI image layout, without Docker, in the format Istio and Envoy
Gateway pull: the "compat" variant of the Wasm image spec (solo-io/wasm spec-compat), one
`application/vnd.oci.image.layer.v1.tar+gzip` layer holding `plugin.wasm` - what a Dockerfile
`FROM scratch` + `COPY claude_gateway.wasm ./plugin.wasm` builds. Istio's image fetcher reads
the last layer of that media type and takes the file named plugin.wasm from it.

  oci_image.py build <module.wasm> <layout-dir> [tag]   writes the layout, prints the digests
  oci_image.py check <module.wasm> <layout-dir>         verifies it, then that a damaged copy
                                                        is rejected (so the check can fail)

The global rate-limit service (ratelimit/) goes in a container image of the same kind: one
layer holding its static binary, which is the image's entrypoint (`FROM scratch` + `COPY`),
runnable by any OCI runtime (Kubernetes, Docker, Podman):

  oci_image.py build-binary <static-binary> <layout-dir> [tag]
  oci_image.py check-binary <static-binary> <layout-dir>   also runs the binary taken from the
                                                            layer (`--help`)

The build is reproducible (fixed timestamps, owners and modes): the same .wasm always gives
the same manifest digest. Push it with skopeo (Debian package `skopeo`):
  skopeo copy oci:<layout-dir>:<tag> docker://registry.example.com/claude-gateway:<tag>
"""

import gzip
import hashlib
import io
import json
import pathlib
import shutil
import sys
import tarfile
import tempfile

MANIFEST = "application/vnd.oci.image.manifest.v1+json"
CONFIG = "application/vnd.oci.image.config.v1+json"
LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
FILE_NAME = "plugin.wasm"
DEFAULT_TAG = "0.1.0"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def tar_entry(name: str, mode: int, data: bytes = b"", directory: bool = False) -> tuple:
    info = tarfile.TarInfo(name)
    info.mode, info.mtime = mode, 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    if directory:
        info.type = tarfile.DIRTYPE
        return info, None
    info.size = len(data)
    return info, io.BytesIO(data)


def layer_tar(entries: list) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in entries:
            tar.addfile(info, data)
    return out.getvalue()


def write_blob(layout: pathlib.Path, data: bytes) -> dict:
    digest = sha256(data)
    (layout / "blobs" / "sha256" / digest).write_bytes(data)
    return {"digest": f"sha256:{digest}", "size": len(data)}


def canonical(obj) -> bytes:
    return json.dumps(obj, separators=(",", ":"), sort_keys=True).encode()


def write_layout(layout: pathlib.Path, tar: bytes, platform: tuple, run: dict, title: str, tag: str) -> str:
    """Writes a one-layer image layout; returns the manifest digest."""
    if layout.exists():
        shutil.rmtree(layout)
    (layout / "blobs" / "sha256").mkdir(parents=True)
    layer = {"mediaType": LAYER, **write_blob(layout, gzip.compress(tar, mtime=0))}
    config = {
        "architecture": platform[0],
        "os": platform[1],
        "config": run,
        "rootfs": {"type": "layers", "diff_ids": [f"sha256:{sha256(tar)}"]},
    }
    config_desc = {"mediaType": CONFIG, **write_blob(layout, canonical(config))}
    manifest = {
        "schemaVersion": 2,
        "mediaType": MANIFEST,
        "config": config_desc,
        "layers": [layer],
        "annotations": {"org.opencontainers.image.title": title},
    }
    manifest_desc = {
        "mediaType": MANIFEST,
        **write_blob(layout, canonical(manifest)),
        "annotations": {"org.opencontainers.image.ref.name": tag},
    }
    (layout / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
             "manifests": [manifest_desc]}
    (layout / "index.json").write_bytes(canonical(index))
    print(f"image layout: {layout} (tag {tag})")
    return manifest_desc["digest"]


def build(wasm_path: pathlib.Path, layout: pathlib.Path, tag: str) -> None:
    wasm = wasm_path.read_bytes()
    if wasm[:4] != b"\0asm":
        raise SystemExit(f"{wasm_path} is not a wasm module")
    tar = layer_tar([tar_entry(FILE_NAME, 0o644, wasm)])
    digest = write_layout(layout, tar, ("wasm", "wasip1"), {}, "claude_gateway", tag)
    print(f"manifest digest: {digest}   (pin it: oci://<registry>/claude-gateway@{digest})")
    print(f"plugin.wasm sha256: {sha256(wasm)}   ({len(wasm)} bytes)")


class Invalid(Exception):
    pass


def blob(layout: pathlib.Path, desc: dict, media_type: str) -> bytes:
    if desc.get("mediaType") != media_type:
        raise Invalid(f"media type {desc.get('mediaType')!r}, expected {media_type!r}")
    algo, _, hexdigest = str(desc.get("digest", "")).partition(":")
    if algo != "sha256" or len(hexdigest) != 64:
        raise Invalid(f"bad digest {desc.get('digest')!r}")
    path = layout / "blobs" / "sha256" / hexdigest
    if not path.is_file():
        raise Invalid(f"missing blob {desc['digest']}")
    data = path.read_bytes()
    if sha256(data) != hexdigest:
        raise Invalid(f"blob {desc['digest']} does not match its digest")
    if len(data) != desc.get("size"):
        raise Invalid(f"blob {desc['digest']} is {len(data)} bytes, descriptor says {desc.get('size')}")
    return data


def read_layout(layout: pathlib.Path) -> tuple:
    """Reads a one-layer layout the way a registry client does: (manifest digest, image config,
    the files of the layer as {name: (mode, content)})."""
    if json.loads((layout / "oci-layout").read_text()).get("imageLayoutVersion") != "1.0.0":
        raise Invalid("oci-layout: imageLayoutVersion is not 1.0.0")
    index = json.loads((layout / "index.json").read_text())
    manifests = index.get("manifests", [])
    if index.get("schemaVersion") != 2 or len(manifests) != 1:
        raise Invalid("index.json: expected schemaVersion 2 and one manifest")
    desc = manifests[0]
    if not desc.get("annotations", {}).get("org.opencontainers.image.ref.name"):
        raise Invalid("index.json: the manifest has no tag (org.opencontainers.image.ref.name)")
    manifest = json.loads(blob(layout, desc, MANIFEST))
    if manifest.get("schemaVersion") != 2 or manifest.get("mediaType") != MANIFEST:
        raise Invalid("manifest: schemaVersion/mediaType")
    config = json.loads(blob(layout, manifest["config"], CONFIG))
    layers = manifest.get("layers", [])
    if len(layers) != 1:
        raise Invalid(f"manifest: {len(layers)} layers, expected 1")
    tar = gzip.decompress(blob(layout, layers[0], LAYER))
    if config.get("rootfs", {}).get("diff_ids") != [f"sha256:{sha256(tar)}"]:
        raise Invalid("config: rootfs.diff_ids does not match the uncompressed layer")
    files = {}
    with tarfile.open(fileobj=io.BytesIO(tar)) as archive:
        for m in archive.getmembers():
            if not m.isdir():
                member = archive.extractfile(m)
                files[m.name] = (m.mode, member.read() if member else b"")
    return desc["digest"], config, files


def verify(wasm_path: pathlib.Path, layout: pathlib.Path) -> str:
    """Checks the layout the way a registry client and Istio's fetcher read it; returns the
    manifest digest."""
    digest, _, files = read_layout(layout)
    if list(files) != [FILE_NAME]:
        raise Invalid(f"layer holds {list(files)}, expected [{FILE_NAME!r}]")
    if files[FILE_NAME][1] != wasm_path.read_bytes():
        raise Invalid("plugin.wasm in the layer differs from the built module")
    return digest


def must_fail(path: pathlib.Path, layout: pathlib.Path, digest: str, verify_fn) -> None:
    """The check must be able to fail: damaged copies of the layout, and another file than the
    built one, are rejected."""
    manifest = json.loads((layout / "blobs" / "sha256" / digest[7:]).read_text())
    damages = {
        "a flipped byte in the layer": lambda d: flip(d / "blobs" / "sha256" / manifest["layers"][0]["digest"][7:]),
        "a wrong layer size": lambda d: resize(d, manifest),
        "another build": None,
    }
    for name, damage in damages.items():
        with tempfile.TemporaryDirectory() as tmp:
            copy = pathlib.Path(tmp) / "layout"
            shutil.copytree(layout, copy)
            built = path
            if damage is None:
                built = pathlib.Path(tmp) / "other"
                built.write_bytes(path.read_bytes() + b"\0")
            else:
                damage(copy)
            try:
                verify_fn(built, copy)
            except Invalid as e:
                print(f"  rejected as it should be ({name}): {e}")
                continue
            raise SystemExit(f"image check is broken: {name} was accepted")


def check(wasm_path: pathlib.Path, layout: pathlib.Path) -> None:
    digest = verify(wasm_path, layout)
    print(f"image layout ok: {layout} {digest}")
    must_fail(wasm_path, layout, digest, verify)


def flip(path: pathlib.Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def resize(layout: pathlib.Path, manifest: dict) -> None:
    # Rewrites the manifest with a wrong layer size and re-points the index at it.
    manifest = json.loads(json.dumps(manifest))
    manifest["layers"][0]["size"] += 1
    desc = write_blob(layout, canonical(manifest))
    index = json.loads((layout / "index.json").read_text())
    index["manifests"][0].update(desc)
    (layout / "index.json").write_bytes(canonical(index))


# The service's image: a static Linux binary as the entrypoint.
BINARY_NAME = "claude-gateway-ratelimit"
BINARY_PATH = "usr/local/bin/" + BINARY_NAME
BINARY_CMD = ["--config", "/etc/claude-gateway/plugin-config.yaml", "--listen", "0.0.0.0:8081"]
# Nobody in particular (no /etc/passwd in the image): the "nonroot" uid of distroless images.
BINARY_USER = "65532:65532"


def elf_is_static_x86_64(data: bytes) -> str:
    """Why `data` is not a static x86-64 Linux executable, or "" if it is one."""
    import struct

    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        return "not a 64-bit little-endian ELF file"
    e_type, e_machine = struct.unpack_from("<HH", data, 16)
    if e_machine != 62 or e_type not in (2, 3):
        return f"not an x86-64 executable (type {e_type}, machine {e_machine})"
    phoff, = struct.unpack_from("<Q", data, 32)
    phentsize, phnum = struct.unpack_from("<HH", data, 54)
    for i in range(phnum):
        p_type, = struct.unpack_from("<I", data, phoff + i * phentsize)
        if p_type == 3:  # PT_INTERP: needs a dynamic loader, which a scratch image lacks
            return "dynamically linked (it names a program interpreter)"
    return ""


def build_binary(binary_path: pathlib.Path, layout: pathlib.Path, tag: str) -> None:
    binary = binary_path.read_bytes()
    why = elf_is_static_x86_64(binary)
    if why:
        raise SystemExit(f"{binary_path}: {why}")
    dirs = [tar_entry(d, 0o755, directory=True) for d in ("usr", "usr/local", "usr/local/bin")]
    tar = layer_tar(dirs + [tar_entry(BINARY_PATH, 0o755, binary)])
    run = {"Entrypoint": ["/" + BINARY_PATH], "Cmd": BINARY_CMD, "User": BINARY_USER,
           "ExposedPorts": {"8081/tcp": {}}}
    digest = write_layout(layout, tar, ("amd64", "linux"), run, BINARY_NAME, tag)
    print(f"manifest digest: {digest}   (pin it: <registry>/{BINARY_NAME}@{digest})")
    print(f"{BINARY_NAME} sha256: {sha256(binary)}   ({len(binary)} bytes, static)")


def verify_binary(binary_path: pathlib.Path, layout: pathlib.Path, run: bool = False) -> str:
    """Checks the layout as a container runtime reads it; returns the manifest digest. With
    `run`, also runs the binary taken out of the layer."""
    digest, config, files = read_layout(layout)
    if (config.get("architecture"), config.get("os")) != ("amd64", "linux"):
        raise Invalid(f"config: platform {config.get('architecture')}/{config.get('os')}")
    if config.get("config", {}).get("Entrypoint") != ["/" + BINARY_PATH]:
        raise Invalid(f"config: entrypoint {config.get('config', {}).get('Entrypoint')}")
    if list(files) != [BINARY_PATH]:
        raise Invalid(f"layer holds {list(files)}, expected [{BINARY_PATH!r}]")
    mode, content = files[BINARY_PATH]
    if mode & 0o111 != 0o111:
        raise Invalid(f"{BINARY_PATH} is not executable (mode {mode:o})")
    if content != binary_path.read_bytes():
        raise Invalid(f"{BINARY_PATH} in the layer differs from the built binary")
    why = elf_is_static_x86_64(content)
    if why:
        raise Invalid(f"{BINARY_PATH}: {why}")
    if run:
        import subprocess

        with tempfile.TemporaryDirectory() as tmp:
            exe = pathlib.Path(tmp) / BINARY_NAME
            exe.write_bytes(content)
            exe.chmod(0o755)
            # An empty environment, as in a scratch image.
            done = subprocess.run([str(exe), "--help"], env={}, capture_output=True, timeout=30)
            if done.returncode != 0 or b"--config" not in done.stderr:
                raise Invalid(f"the binary from the layer does not run: {done.returncode} {done.stderr[:200]!r}")
    return digest


def check_binary(binary_path: pathlib.Path, layout: pathlib.Path) -> None:
    digest = verify_binary(binary_path, layout, run=True)
    print(f"image layout ok: {layout} {digest}; the binary from its layer runs")
    must_fail(binary_path, layout, digest, verify_binary)


def main(argv: list) -> int:
    commands = ("build", "check", "build-binary", "check-binary")
    if len(argv) < 4 or argv[1] not in commands:
        print(__doc__)
        return 2
    path, layout = pathlib.Path(argv[2]), pathlib.Path(argv[3])
    tag = argv[4] if len(argv) > 4 else DEFAULT_TAG
    if argv[1] == "build":
        build(path, layout, tag)
        return 0
    if argv[1] == "build-binary":
        build_binary(path, layout, tag)
        return 0
    try:
        if argv[1] == "check":
            check(path, layout)
        else:
            check_binary(path, layout)
    except (Invalid, OSError, ValueError, KeyError) as e:
        print(f"image layout INVALID: {e}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
