#!/usr/bin/env python3
"""Sanity checks for the RFC 4475 torture corpus in this directory.

Run: python3 tests/data/rfc4475/check.py      (exit 0 = all good; Python >= 3.11, stdlib only)

Checks, per .dat file:
  * it is listed in expected.toml, and every manifest entry has a file (and valid keys);
  * its bytes match SHA256SUMS (the pin taken when the corpus was made), and the 13 valid
    messages (3.1.1) also match the digests published by an independent decode of the RFC's
    Appendix A archive (INDEPENDENT below);
  * the first line is a start line: a Request-Line or a Status-Line shape, loose enough to let
    the deliberately malformed ones through (ltgtruri, lwsstart, trws, badvers, bigcode ...);
  * the header section uses CRLF only (no bare CR or LF before the empty line);
  * the header section ends with CRLF CRLF (baddn is the one documented exception: the archive's
    copy stops after "l: 0" CRLF);
  * where there is exactly one numeric Content-Length, it is compared with the octets that follow
    the empty line, and any difference must be one the manifest explains (clerr, ncl, dblreq).
"""
import hashlib
import pathlib
import re
import sys
import tomllib

HERE = pathlib.Path(__file__).resolve().parent

# SHA-256 of the 13 RFC 4475 section 3.1.1 messages as published by an independent decode of
# the Appendix A archive (two decodes agreeing is the byte-exactness evidence).
INDEPENDENT = {
    "wsinv": "d6f6cdee99cd0a1f8e3d9a0fdd67c877700e19ab86d8186dada06f61260e3e61",
    "intmeth": "b957a8292c1c0a9851fe94705b90f94320738f43aacde64998e401f742ef688d",
    "esc01": "be3a316d4ce5f69cad474646191e390dd4b50fc8371e44b5197fe1237781973e",
    "escnull": "263fe2ecd12a5ccbb6c67b3174e9211d11da9b600e7d69666a86d2ee42873e90",
    "esc02": "9a9c59449f00327b02071feafc8e5c2a261c98c818044167894cc17809a12199",
    "lwsdisp": "d1b36b6316c12824f6f04bf6b1fd1f021cade9b74871693b9c3474cd9fa7f4e6",
    "longreq": "185739292bc676760e5b1cca77c87705aa570240171c506ad76f8c35af0ecdaa",
    "dblreq": "a6be48426565c2a705389c4ce2ea17e57b891cb13f80490a2cb9392c797b46ef",
    "semiuri": "87bbaed6b4b354dbd3c5c7a20e66686303c63e43a0aa19b89de1ac75231611a2",
    "transports": "33b4553a3b9418121b099ff07882535151edd6a1e81898c63a916aad2cbf90bc",
    "mpart01": "92147c8e24997bac59629e1b163767697d0d6d499af87f89e325d69968bec3ba",
    "unreason": "4f939d6ebf4817eea70f011d3209e83732872ffc20ffd304b244084dc392f4d7",
    "noreason": "07e11e470a69fffa3674de805e5165d1351a9439a91045ee70c9570ea24ab4fe",
}

NO_EMPTY_LINE = {"baddn"}
# Content-Length that deliberately disagrees with the octets present.
CL_MISMATCH_OK = {"clerr", "ncl", "dblreq"}

KINDS = {"valid", "invalid", "transaction", "application", "compat"}
EXPECT = re.compile(r"^(process|drop|[1-6]\d\d)$")

REQUEST_LINE = re.compile(rb"^[!-~]+ +\S.*? +SIP/\d+\.\d+ *$")
STATUS_LINE = re.compile(rb"^SIP/\d+\.\d+ \d+ .*$")
CONTENT_LENGTH = re.compile(rb"^(?:content-length|l)[ \t]*:[ \t]*(\S*)[ \t]*$", re.I | re.M)


def main() -> int:
    errors: list[str] = []
    manifest = tomllib.loads((HERE / "expected.toml").read_text(encoding="utf-8"))
    pins = {}
    for line in (HERE / "SHA256SUMS").read_text().splitlines():
        digest, name = line.split()
        pins[name.removesuffix(".dat")] = digest

    files = {p.stem: p for p in sorted(HERE.glob("*.dat"))}
    for name in sorted(set(manifest) - set(files)):
        errors.append(f"{name}: in expected.toml but no {name}.dat")
    for name in sorted(set(files) - set(manifest)):
        errors.append(f"{name}: {name}.dat has no entry in expected.toml")

    for name, entry in manifest.items():
        if not re.fullmatch(r"3\.[1-4](\.\d+){1,2}", str(entry.get("section", ""))):
            errors.append(f"{name}: bad section {entry.get('section')!r}")
        if entry.get("kind") not in KINDS:
            errors.append(f"{name}: bad kind {entry.get('kind')!r}")
        for outcome in [entry.get("expect", "")] + list(entry.get("also_ok", [])):
            if not EXPECT.match(str(outcome)):
                errors.append(f"{name}: bad outcome {outcome!r}")
        if not entry.get("note"):
            errors.append(f"{name}: no note")
        unknown = set(entry) - {"section", "kind", "expect", "also_ok", "note"}
        if unknown:
            errors.append(f"{name}: unknown keys {sorted(unknown)}")

    for name, path in files.items():
        data = path.read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        if pins.get(name) != digest:
            errors.append(f"{name}: SHA-256 {digest} differs from SHA256SUMS")
        if name in INDEPENDENT and INDEPENDENT[name] != digest:
            errors.append(f"{name}: SHA-256 differs from the independent RFC 4475 decode")

        first = data.split(b"\r\n", 1)[0]
        if not (REQUEST_LINE.match(first) or STATUS_LINE.match(first)):
            errors.append(f"{name}: first line is not a start line: {first[:60]!r}")

        end = data.find(b"\r\n\r\n")
        if end < 0:
            if name not in NO_EMPTY_LINE:
                errors.append(f"{name}: no CRLF CRLF ending the header section")
            head, body = data, b""
        else:
            if name in NO_EMPTY_LINE:
                errors.append(f"{name}: expected no empty line (archive copy), found one")
            head, body = data[: end + 2], data[end + 4 :]
        if re.search(rb"\r(?!\n)|(?<!\r)\n", head):
            errors.append(f"{name}: bare CR or LF in the header section")
        if not data.endswith(b"\r\n"):
            errors.append(f"{name}: does not end with CRLF")

        lengths = CONTENT_LENGTH.findall(head)
        if len(lengths) == 1 and re.fullmatch(rb"\d+", lengths[0]):
            declared = int(lengths[0])
            if declared != len(body) and name not in CL_MISMATCH_OK:
                errors.append(f"{name}: Content-Length {declared} but {len(body)} octets follow")
            if declared == len(body) and name in CL_MISMATCH_OK:
                errors.append(f"{name}: listed as a Content-Length mismatch but matches")

    for e in errors:
        print("FAIL", e)
    print(f"{len(files)} files, {len(manifest)} manifest entries, "
          f"{sum(1 for n in files if n in INDEPENDENT)} checked against the independent decode: "
          f"{'OK' if not errors else f'{len(errors)} problem(s)'}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
