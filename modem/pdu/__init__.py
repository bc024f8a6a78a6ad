"""SMS PDU codec (TS 23.040, TS 23.038): SUBMIT, DELIVER, STATUS-REPORT, UDH and segmentation.

Pure functions and frozen dataclasses; every malformed input raises `PduError`.
"""

from __future__ import annotations

from modem.errors import PduError
from modem.pdu.address import Address
from modem.pdu.deliver import Deliver
from modem.pdu.fields import Reader, as_octets
from modem.pdu.segment import Segmentation, count_segments, encode_submits, join_user_data, segment_text
from modem.pdu.status_report import StatusCategory, StatusReport, TpStatus
from modem.pdu.submit import Submit
from modem.pdu.udh import Concat, Encoding, InformationElement

__all__ = [
    "Address",
    "Concat",
    "Deliver",
    "Encoding",
    "InformationElement",
    "PduError",
    "Segmentation",
    "StatusCategory",
    "StatusReport",
    "Submit",
    "TpStatus",
    "count_segments",
    "decode_pdu",
    "encode_submits",
    "join_user_data",
    "segment_text",
]


def decode_pdu(hex_or_bytes: str | bytes, *, smsc: bool = True) -> Deliver | Submit | StatusReport:
    """Decode a PDU as AT+CMGR/+CMGL/+CMT/+CDS print it (hex, or raw octets); TP-MTI picks the type."""
    reader = Reader(as_octets(hex_or_bytes))
    address = Address.decode_smsc(reader) if smsc else None
    if not reader.remaining:
        raise PduError("PDU has no TPDU after the SMSC field")
    # TS 23.040 9.2.3.1: TP-MTI is bits 1..0 of the first octet (MS-bound view).
    mti = reader.data[reader.pos] & 0x03
    if mti == 0:
        return Deliver.read(reader, address)
    if mti == 1:
        return Submit.read(reader, address)
    if mti == 2:
        return StatusReport.read(reader, address)
    raise PduError("TP-MTI 3 is reserved")
