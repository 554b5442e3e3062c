"""An image file's header, read before any pixel is decoded: PNG or JPEG, its size and channels, or why it is not one.

Channels are those TensorFlow's ``decode_image(channels=0)`` gives (tests/test_image_files.py holds this to TensorFlow);
``check_pixels`` refuses a small file declaring a huge image (``MAX_IMAGE_BYTES``). Every refusal is one ``UserError``.
"""

from __future__ import annotations

import io
import re
import struct
import zlib
from dataclasses import dataclass

from mlp_core.errors import UserError

# One decoded image's bytes at most (height x width x channels): 64 MiB, e.g. 4096x4096x4 or a 22-megapixel RGB
# photo. The decoder holds the whole image before --resize shrinks it, and decodes 64 images at once.
MAX_IMAGE_BYTES = 64 << 20
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
JPEG_START = b"\xff\xd8\xff"
# PNG colour type -> (allowed bit depths, channels decode_image gives) (PNG spec, 11.2.2 IHDR)
_PNG_TYPES = {0: ((1, 2, 4, 8, 16), 1), 2: ((8, 16), 3), 3: ((1, 2, 4, 8), 3), 4: ((8, 16), 2), 6: ((8, 16), 4)}
# JPEG start-of-frame markers (ITU T.81 table B.1): every SOFn but DHT (C4), JPG (C8) and DAC (CC)
_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


@dataclass(frozen=True)
class Header:
    format: str  # "PNG" or "JPEG"
    height: int
    width: int
    channels: int  # as decode_image(channels=0) gives them
    cmyk: bool = False  # a 4-component JPEG (TensorFlow decodes it to RGB, and converts it to nothing else)

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.height, self.width, self.channels


def kind_of(data: bytes) -> "str | None":
    """``"PNG"``, ``"JPEG"`` or None, by the first bytes."""
    return "PNG" if data.startswith(PNG_SIGNATURE) else "JPEG" if data.startswith(JPEG_START) else None


def _refuse(name: str, kind: str, why: str) -> UserError:
    return UserError(f"{name}: not a valid {kind} ({why})")


def read_header(name: str, data: bytes) -> Header:
    """The header of the PNG or JPEG ``data`` (file ``name``), its structure checked: a cut file never reaches the decoder."""
    kind = kind_of(data)
    if kind is None:
        why = "the file is empty" if not data else "its first bytes are neither a PNG signature nor a JPEG start"
        raise _refuse(name, "PNG/JPEG", why)
    if kind == "JPEG":
        return _jpeg(name, data)
    header = _png(name, data)
    fault = _png_fault(data)
    if fault:
        raise _refuse(name, kind, fault)
    return header


def _png(name: str, data: bytes) -> Header:
    if len(data) < 33:
        raise _refuse(name, "PNG", f"the file ends inside its header, after {len(data)} bytes")
    length, chunk_type = struct.unpack(">I4s", data[8:16])
    if chunk_type != b"IHDR" or length != 13:
        raise _refuse(name, "PNG", "its first chunk is not a 13-byte IHDR header")
    if zlib.crc32(data[12:29]) != struct.unpack(">I", data[29:33])[0]:
        raise _refuse(name, "PNG", "its header's checksum (CRC) does not match: the file is damaged")
    width, height, depth, colour, compression, filtering, interlace = struct.unpack(">IIBBBBB", data[16:29])
    if width == 0 or height == 0:
        raise _refuse(name, "PNG", f"it declares {width}x{height} pixels")
    if width > 2**31 - 1 or height > 2**31 - 1:
        raise _refuse(name, "PNG", f"it declares {width}x{height} pixels, beyond the PNG limit of 2^31-1")
    if colour not in _PNG_TYPES or depth not in _PNG_TYPES[colour][0] or compression or filtering or interlace > 1:
        raise _refuse(name, "PNG", f"its header declares an invalid format (bit depth {depth}, colour type {colour})")
    channels = _PNG_TYPES[colour][1]
    if colour == 3 and _has_chunk(data, b"tRNS"):  # a palette with transparency decodes to RGBA
        channels = 4
    return Header("PNG", height, width, channels)


def _has_chunk(data: bytes, wanted: bytes) -> bool:
    """Whether a chunk ``wanted`` comes before the image data (chunk headers only; nothing decompressed)."""
    at = 33
    while at + 8 <= len(data):
        length, chunk_type = struct.unpack(">I4s", data[at:at + 8])
        if chunk_type == wanted:
            return True
        if chunk_type in (b"IDAT", b"IEND"):
            return False
        at += 12 + length
    return False


def _jpeg(name: str, data: bytes) -> Header:
    at = 2
    while True:
        while at < len(data) and data[at] == 0xFF and at + 1 < len(data) and data[at + 1] == 0xFF:
            at += 1  # fill bytes before a marker
        if at + 4 > len(data):
            raise _refuse(name, "JPEG", f"the file ends before its frame header, after {len(data)} bytes")
        if data[at] != 0xFF:
            raise _refuse(name, "JPEG", f"no marker where one belongs, at byte {at}")
        marker = data[at + 1]
        if marker == 0xDA or marker == 0xD9:
            raise _refuse(name, "JPEG", "its image data starts before any frame header")
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:  # markers without a length
            at += 2
            continue
        length = struct.unpack(">H", data[at + 2:at + 4])[0]
        if marker in _SOF:
            if at + 10 > len(data) or length < 8:
                raise _refuse(name, "JPEG", "the file ends inside its frame header")
            height, width, components = struct.unpack(">HHB", data[at + 5:at + 10])
            if width == 0 or height == 0:
                raise _refuse(name, "JPEG", f"it declares {width}x{height} pixels")
            if components not in (1, 3, 4):
                raise _refuse(name, "JPEG", f"it declares {components} colour components (1, 3 or 4 decode)")
            # past the frame header only the image's own EOI can be FF D9 (entropy-coded FF bytes are stuffed with 00)
            if b"\xff\xd9" not in data[at:]:
                raise _refuse(name, "JPEG", "the file is truncated: it has no end marker (EOI)")
            return Header("JPEG", height, width, 1 if components == 1 else 3, cmyk=components == 4)
        if length < 2:
            raise _refuse(name, "JPEG", f"a segment at byte {at} declares a length of {length}")
        at += 2 + length


def check_pixels(name: str, header: Header, target: "tuple[int, int, int] | None" = None, resize: bool = False):
    """Refuse an image too large to decode, or one ``resize`` cannot convert to ``target``'s channels."""
    size = header.height * header.width * header.channels
    if size > MAX_IMAGE_BYTES:
        raise UserError(f"{name}: {header.width}x{header.height} pixels of {header.channels} channel(s) would "
                           f"take {size >> 20} MiB decoded, more than the {MAX_IMAGE_BYTES >> 20} MiB an image may")
    if resize and target is not None and target[2] != header.channels and header.format == "JPEG":
        # TensorFlow's JPEG decoder converts to 1 or 3 channels only, and a CMYK JPEG to 3 only
        if target[2] == 4 or (header.cmyk and target[2] == 1):
            what = "a CMYK JPEG" if header.cmyk else "a JPEG"
            raise UserError(f"{name}: {what} cannot be converted to {target[2]} channel(s) by --resize "
                               "(TensorFlow's JPEG decoder cannot); convert it to PNG first")


def check_shape(name: str, shape: "tuple[int, ...] | list[int]", what: str) -> None:
    """Refuse an image shape (``--image-shape``, a served model's input) whose images would exceed the cap."""
    size = 1
    for v in shape:
        size *= int(v)
    if size > MAX_IMAGE_BYTES:
        raise UserError(f"{name}: {what} {list(shape)} would take {size >> 20} MiB per image, more than the "
                           f"{MAX_IMAGE_BYTES >> 20} MiB an image may")


def undecodable(name: str, data: bytes, error: BaseException) -> UserError:
    """Why ``data`` (header and structure passed) did not decode, in Pillow's words, else the decoder's without op names."""
    from PIL import Image  # here: only an undecodable image needs Pillow (predict's start-up)

    try:
        with Image.open(io.BytesIO(data), formats=("PNG", "JPEG")) as image:
            image.load()
        why = _plain(getattr(error, "message", "") or str(error))
    except Exception as pillow:
        why = _plain(str(pillow)) or type(pillow).__name__
    return _refuse(name, kind_of(data) or "PNG/JPEG", why)


def _png_fault(data: bytes) -> "str | None":
    """The first chunk that runs past the end or fails its CRC, or a missing IEND (PNG spec 5.3, 5.6)."""
    at = 8
    while at + 12 <= len(data):
        length, chunk_type = struct.unpack(">I4s", data[at:at + 8])
        label = chunk_type.decode("latin-1") if chunk_type.isalpha() else repr(chunk_type)
        if at + 12 + length > len(data):
            return f"the file is truncated: chunk {label} at byte {at} runs past its end"
        if zlib.crc32(data[at + 4:at + 8 + length]) != struct.unpack(">I", data[at + 8 + length:at + 12 + length])[0]:
            return f"chunk {label} at byte {at} fails its checksum (CRC): the file is damaged"
        if chunk_type == b"IEND":
            return None
        at += 12 + length
    return "the file is truncated: it ends before its IEND chunk"


def _plain(text: str) -> str:
    """A decoder's message without TensorFlow's op framing (``{{function_node ...}}``, ``[Op:DecodeImage]``)."""
    text = re.sub(r"\{\{[^}]*\}\}|\[Op:[^\]]*\]|<[^>]* object at 0x[0-9a-f]+>", "", text.strip().split("\n")[0])
    return " ".join(text.split())[:150].rstrip(" .:") or "it does not decode"
