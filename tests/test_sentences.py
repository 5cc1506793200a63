import os
import random

import pytest

from pipeline.sentences import split_sentences


@pytest.mark.parametrize("language, text, expected", [
    ("en", "It rained. Then it stopped.", ["It rained.", "Then it stopped."]),
    ("en", "Dr. Smith met Mr. Jones. They talked.", ["Dr. Smith met Mr. Jones.", "They talked."]),
    ("en", "Use a list, e.g. a stack. It works.", ["Use a list, e.g. a stack.", "It works."]),
    ("en", "She moved to the U.S.A. in May. It was warm.", ["She moved to the U.S.A. in May.", "It was warm."]),
    ("en", "I live in the U.S. How about you?", ["I live in the U.S.", "How about you?"]),
    ("en", "J. R. R. Tolkien wrote it. Many read it.", ["J. R. R. Tolkien wrote it.", "Many read it."]),
    ("en", "Pi is 3.14159 roughly. Yes.", ["Pi is 3.14159 roughly.", "Yes."]),
    ("en", "She has $100.00. It is in her bag.", ["She has $100.00.", "It is in her bag."]),
    ("en", "Call os.path.join() here. Then return.", ["Call os.path.join() here.", "Then return."]),
    ("en", "Really? Yes! Fine.", ["Really?", "Yes!", "Fine."]),
    ("en", 'He said "Stop." Then he left.', ['He said "Stop."', "Then he left."]),
    ("en", "Wait... What now?", ["Wait...", "What now?"]),
    ("en", "version 2. 3 items were left.", ["version 2.", "3 items were left."]),
    ("en", "no punctuation at all", ["no punctuation at all"]),
    ("en", "A line\nwrapped here.  Next one.", ["A line\nwrapped here.", "Next one."]),
    ("en", "See table A\u00a0. Then go on.", ["See table A\u00a0.", "Then go on."]),  # sentencex alone panics
    ("en", "", []),
    ("en", "   ", []),
    ("de", "Nach § 3 Abs. 2 des Vertrags gilt das. Dann folgt mehr.",
     ["Nach § 3 Abs. 2 des Vertrags gilt das.", "Dann folgt mehr."]),
    ("de", "Das gilt für Mieter bzw. Vermieter. Beide zahlen.", ["Das gilt für Mieter bzw. Vermieter.", "Beide zahlen."]),
    ("de", "Man nehme z. B. einen Apfel. Er ist rot.", ["Man nehme z. B. einen Apfel.", "Er ist rot."]),
    ("de", "Man nehme z.B. einen Apfel. Er ist rot.", ["Man nehme z.B. einen Apfel.", "Er ist rot."]),
    ("de", "Dr. Müller kam ca. 10 Min. zu spät. Er entschuldigte sich.",
     ["Dr. Müller kam ca. 10 Min. zu spät.", "Er entschuldigte sich."]),
    ("de", "Die Einheit wurde am 3. Oktober 1990 vollzogen. Seitdem ist das ein Feiertag.",
     ["Die Einheit wurde am 3. Oktober 1990 vollzogen.", "Seitdem ist das ein Feiertag."]),
    ("de", "Montag, 3. Oktober: Feiertag. Dienstag wieder Arbeit.",
     ["Montag, 3. Oktober: Feiertag.", "Dienstag wieder Arbeit."]),
    ("de", "Er kam am 3. Sept. zurück. Sie am 4. Nov.", ["Er kam am 3. Sept. zurück.", "Sie am 4. Nov."]),
    ("de", "Das steht in Abs. 4. Lies es.", ["Das steht in Abs. 4.", "Lies es."]),  # a number, not a date: split
    ("de", "Wie geht es dir? Mir geht es gut!", ["Wie geht es dir?", "Mir geht es gut!"]),
    ("zh", "今天天气很好。我们去公园吧！你来吗？", ["今天天气很好。", "我们去公园吧！", "你来吗？"]),
    ("zh", "他说：“我明天来。”然后他走了。", ["他说：“我明天来。”", "然后他走了。"]),
    ("zh", "价格是3.5元。很便宜。", ["价格是3.5元。", "很便宜。"]),
    ("ja", "今日は晴れです。明日は雨でしょう。", ["今日は晴れです。", "明日は雨でしょう。"]),
    ("ja", "本当ですか？はい、本当です！", ["本当ですか？", "はい、本当です！"]),
    ("ru", "Он пришёл домой. Она уже спала.", ["Он пришёл домой.", "Она уже спала."]),
    ("ru", "Поэт А. С. Пушкин написал это. Все знают.", ["Поэт А. С. Пушкин написал это.", "Все знают."]),
    ("ru", "Это было в 1990 г. в Москве. Потом он уехал.", ["Это было в 1990 г. в Москве.", "Потом он уехал."]),
    ("el", "Ήρθε χθες. Έφυγε σήμερα.", ["Ήρθε χθες.", "Έφυγε σήμερα."]),
    ("el", "Πού είσαι; Είμαι εδώ.", ["Πού είσαι;", "Είμαι εδώ."]),
    ("el", "Αυτό είναι π.χ. ένα παράδειγμα. Τέλος.", ["Αυτό είναι π.χ. ένα παράδειγμα.", "Τέλος."]),
])
def test_split_sentences(language, text, expected):
    assert split_sentences(text, language) == expected


def _real_texts() -> dict[str, str]:
    from pipeline.corpus import pydoc_topics_text

    texts = {"pydoc": pydoc_topics_text()}
    for name in ("GPL-3", "Apache-2.0"):
        path = f"/usr/share/common-licenses/{name}"
        if os.path.isfile(path):
            texts[name] = open(path, encoding="utf-8").read()
    return texts


@pytest.mark.parametrize("language", ["en", "de"])
def test_sentences_are_the_text_in_order_on_real_text(language):
    texts = _real_texts()
    # Paragraphs, as `document_format: blank_line` gives them, and whole texts (sentencex cuts those past 10 KB
    # at blank lines).
    documents = [p for text in texts.values() for p in text.split("\n\n")] + list(texts.values())
    for document in documents:
        sentences = split_sentences(document, language)
        assert all(sentences) and all(s == s.strip() for s in sentences)
        start = 0
        for sentence in sentences:
            found = document.find(sentence, start)
            assert found >= start, (sentence, document[start:start + 200])
            assert not document[start:found].strip()  # nothing but space is skipped
            start = found + len(sentence)
        assert not document[start:].strip()


def test_wide_spaces_are_kept_in_the_sentences():
    rng = random.Random(0)
    spaces = [chr(c) for c in range(0x80, 0x3001) if chr(c).isspace()]
    words = ["Alpha", "B", "c", ".", "Dr.", "e.g.", "3.", "Oktober", "end."]
    for _ in range(300):
        text = "".join(rng.choice(words) + rng.choice(spaces + [" ", ". ", "? "]) for _ in range(rng.randint(1, 12)))
        for language in ("en", "de"):
            sentences = split_sentences(text, language)
            assert all(s in text for s in sentences)
            assert "".join(c for s in sentences for c in s if not c.isspace()) == "".join(text.split())


def test_wrongly_paired_emphasis_marks_do_not_swallow_a_section():
    # A bullet "* " shifts the pairing of *emphasis* marks; sentencex alone returns one 800-character "sentence".
    text = ("* Multiple inheritance is fine.\n* If an *iterator* is used for *__slots__* then a *descriptor* is created "
            "for each of the iterator’s values. However, the *__slots__* attribute will be an empty iterator.\n"
            'Whenever a class inherits from another class, "__init_subclass__()" is called on the parent class. '
            "This way, it is possible to write classes. " + "This is closely related to class decorators. " * 8)
    sentences = split_sentences(text)
    assert len(sentences) == 13 and max(map(len, sentences)) < 120
