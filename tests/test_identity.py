import pytest
from conftest import PEPPER, make_ric, make_uscc

from sanction_service.identity import (
    DocumentType,
    InvalidDocument,
    document_key,
    mask_number,
    normalize,
    pepper_fingerprint,
)

RID = DocumentType.RESIDENT_ID


def test_valid_resident_id_is_normalised_from_spaces_hyphens_and_lower_case_x():
    number = make_ric("342301", "19640101", 322)
    messy = f" {number[:6]}-{number[6:14]} {number[14:].lower()} "
    assert normalize(RID, messy).number == number


@pytest.mark.parametrize("position", [0, 7, 16, 17])
def test_resident_id_with_a_wrong_character_fails_the_checksum(position):
    number = make_ric()
    replacement = "0" if number[position] != "0" else "1"
    broken = number[:position] + replacement + number[position + 1 :]
    with pytest.raises(InvalidDocument) as exc:
        normalize(RID, broken)
    assert exc.value.field == "document.number"
    assert broken not in str(exc.value)


def test_resident_id_check_char_x_is_accepted():
    # Find a body whose check char is X (ISO 7064 MOD 11-2 value 10).
    number = next(make_ric("110105", "19800101", s) for s in range(1000) if make_ric("110105", "19800101", s)[-1] == "X")
    assert normalize(RID, number.lower()).number == number


def test_fifteen_digit_legacy_id_converts_to_eighteen_with_19_and_check_char():
    eighteen = make_ric("342301", "19640101", 322)
    legacy = eighteen[:6] + eighteen[8:17]
    assert len(legacy) == 15
    assert normalize(RID, legacy).number == eighteen


def test_resident_id_with_impossible_birth_date_is_rejected():
    with pytest.raises(InvalidDocument, match="birth date"):
        normalize(RID, make_ric("110105", "19801332", 1))


@pytest.mark.parametrize("number", ["", "   ", "12345", "1101051980010112345", "11010519800101123Y"])
def test_resident_id_of_wrong_shape_is_rejected(number):
    with pytest.raises(InvalidDocument):
        normalize(RID, number)


def test_resident_id_from_another_country_is_rejected():
    with pytest.raises(InvalidDocument) as exc:
        normalize(RID, make_ric(), "USA")
    assert exc.value.field == "document.country"


def test_uscc_checksum_and_alphabet():
    good = make_uscc()
    assert normalize(DocumentType.USCC, good.lower()).number == good
    bad_check = good[:17] + ("0" if good[17] != "0" else "1")
    with pytest.raises(InvalidDocument, match="check character"):
        normalize(DocumentType.USCC, bad_check)
    with pytest.raises(InvalidDocument, match="0-9A-HJ-NPQRTUWXY"):
        normalize(DocumentType.USCC, "I" + good[1:])


def test_uscc_with_department_code_a_is_accepted_unlike_stdnum_validate():
    number = make_uscc("A111000060003734")
    assert normalize(DocumentType.USCC, number).number == number


def test_passport_defaults_to_chn_and_keys_differ_by_country():
    chn = normalize(DocumentType.PASSPORT, "e1234-5678")
    usa = normalize(DocumentType.PASSPORT, "E12345678", "usa")
    assert (chn.number, chn.country, usa.country) == ("E12345678", "CHN", "USA")
    assert document_key(PEPPER, chn) != document_key(PEPPER, usa)


@pytest.mark.parametrize("number", ["E12", "E" * 21, "E1234567!"])
def test_format_only_documents_reject_bad_shapes(number):
    with pytest.raises(InvalidDocument):
        normalize(DocumentType.HK_MACAO_PERMIT, number)


def test_masking_hides_birth_month_and_day_of_resident_ids():
    assert mask_number(RID, "342301196401013224") == "3423011964****3224"


def test_masking_other_documents_keeps_first_two_and_last_two():
    assert mask_number(DocumentType.PASSPORT, "E12345678") == "E1*****78"
    assert mask_number(DocumentType.USCC, "91110000600037341X") == "91**************1X"


def test_key_depends_on_pepper_and_never_contains_the_number():
    document = normalize(RID, make_ric())
    key = document_key(PEPPER, document)
    assert len(key) == 16
    assert key != document_key(b"another-pepper-0123456789abcdef!", document)
    assert document.number.encode() not in key
    assert document.number not in repr(document)


def test_pepper_fingerprint_distinguishes_peppers():
    assert pepper_fingerprint(PEPPER) != pepper_fingerprint(PEPPER + b"x")
    assert pepper_fingerprint(PEPPER) == pepper_fingerprint(bytes(PEPPER))


class _Untouchable(str):
    """A number that fails the test if normalize does any work on it."""

    def translate(self, *args):
        raise AssertionError("worked on an over-long number")

    upper = strip = translate


@pytest.mark.parametrize(
    "field,number,country",
    [("document.number", _Untouchable("1" * 3_000_000), ""), ("document.country", "E12345678", _Untouchable("C" * 3_000_000))],
)
def test_huge_number_or_country_is_refused_before_any_work_and_not_echoed(field, number, country):
    with pytest.raises(InvalidDocument) as exc:
        normalize(DocumentType.PASSPORT, number, country)
    assert exc.value.field == field and "111" not in str(exc.value) and "CCC" not in str(exc.value)


@pytest.mark.parametrize("country", [156, ["CHN"], {"c": 1}, True])
def test_country_that_is_not_a_string_is_rejected(country):
    with pytest.raises(InvalidDocument) as exc:
        normalize(DocumentType.PASSPORT, "E12345678", country)
    assert (exc.value.field, exc.value.reason) == ("document.country", "must be a string")
