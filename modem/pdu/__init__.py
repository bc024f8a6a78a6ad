"""SMS PDU codec (TS 23.040, TS 23.038): SUBMIT, DELIVER, STATUS-REPORT, UDH and segmentation.

Pure functions and frozen dataclasses; every malformed input raises `PduError`. A field that
neither matching a report nor reading a text needs (SMSC address, timestamps, octets after
the TPDU, reserved codings) is read as unknown instead: the decoded message lists it in
`warnings`, and `decode_pdu` logs each distinct warning once (see `tolerance`).
"""

from __future__ import annotations

from modem.errors import PduError
from modem.pdu.address import Address
from modem.pdu.deliver import Deliver
from modem.pdu.fields import Reader, as_octets
from modem.pdu.segment import Segmentation, count_segments, encode_submits, join_user_data, segment_text
from modem.pdu.status_report import StatusCategory, StatusReport, TpStatus
from modem.pdu.submit import Submit
from modem.pdu.tolerance import log_once
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
    """Decode a PDU as AT+CMGR/+CMGL/+CMT/+CDS print it (hex, or raw octets); TP-MTI picks the type.

    Tolerated oddities are in the result's `warnings` and logged once per distinct text.
    """
    reader = Reader(as_octets(hex_or_bytes))
    address = Address.decode_smsc(reader) if smsc else None
    if not reader.remaining:
        raise PduError("PDU has no TPDU after the SMSC field")
    # TS 23.040 9.2.3.1: TP-MTI is bits 1..0 of the first octet (MS-bound view). "If an MS
    # receives a TPDU with a 'Reserved' value in the TP-MTI it shall process the message as
    # if it were an SMS-DELIVER": MTI 3 is read as a DELIVER (Deliver.read notes it).
    mti = reader.data[reader.pos] & 0x03
    message: Deliver | Submit | StatusReport
    if mti == 1:
        message = Submit.read(reader, address)
    elif mti == 2:
        message = StatusReport.read(reader, address)
    else:
        message = Deliver.read(reader, address)
    log_once(message.warnings, kind=type(message).__name__)
    return message
