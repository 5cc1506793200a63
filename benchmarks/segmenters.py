"""Sentence segmenters side by side: speed on real text and accuracy on golden-rules cases.

    python benchmarks/segmenters.py                      # this checkout's split_sentences and sentencex
    pip install pysbd syntok blingfire sentence-splitter  # to compare them too (not dependencies)
    python benchmarks/segmenters.py --pipeline ../other-checkout  # another checkout's split_sentences

Speed is MB/s of UTF-8 text on one core, best of --repeats, over the documents `prepare` would see
with `document_format: blank_line`: the CPython docs (pydoc_data.topics) and the licence texts in
/usr/share/common-licenses. Accuracy is the share of cases whose stripped sentences are exactly the
expected ones: the English Golden Rules of pragmatic_segmenter (those whose answer is unambiguous),
this project's own English cases, and cases in German, Chinese, Japanese, Russian and Greek.
"""

import argparse
import functools
import glob
import inspect
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

GOLDEN = {
    "en golden": [
        ("Hello World. My name is Jonas.", ["Hello World.", "My name is Jonas."]),
        ("What is your name? My name is Jonas.", ["What is your name?", "My name is Jonas."]),
        ("There it is! I found it.", ["There it is!", "I found it."]),
        ("My name is Jonas E. Smith.", ["My name is Jonas E. Smith."]),
        ("Please turn to p. 55.", ["Please turn to p. 55."]),
        ("Were Jane and co. at the party?", ["Were Jane and co. at the party?"]),
        ("They closed the deal with Pitt, Briggs & Co. at noon.",
         ["They closed the deal with Pitt, Briggs & Co. at noon."]),
        ("Let's ask Jane and co. They should know.", ["Let's ask Jane and co.", "They should know."]),
        ("They closed the deal with Pitt, Briggs & Co. It closed yesterday.",
         ["They closed the deal with Pitt, Briggs & Co.", "It closed yesterday."]),
        ("I can see Mt. Fuji from here.", ["I can see Mt. Fuji from here."]),
        ("St. Michael's Church is on 5th st. near the light.", ["St. Michael's Church is on 5th st. near the light."]),
        ("That is JFK Jr.'s book.", ["That is JFK Jr.'s book."]),
        ("I visited the U.S.A. last year.", ["I visited the U.S.A. last year."]),
        ("I live in the E.U. How about you?", ["I live in the E.U.", "How about you?"]),
        ("I live in the U.S. How about you?", ["I live in the U.S.", "How about you?"]),
        ("I work for the U.S. Government in Virginia.", ["I work for the U.S. Government in Virginia."]),
        ("I have lived in the U.S. for 20 years.", ["I have lived in the U.S. for 20 years."]),
        ("At 5 a.m. Mr. Smith went to the bank. He left the bank at 6 P.M. Mr. Smith then went to the store.",
         ["At 5 a.m. Mr. Smith went to the bank.", "He left the bank at 6 P.M.", "Mr. Smith then went to the store."]),
        ("She has $100.00 in her bag.", ["She has $100.00 in her bag."]),
        ("She has $100.00. It is in her bag.", ["She has $100.00.", "It is in her bag."]),
        ("He teaches science (He previously worked for 5 years as an engineer.) at the local University.",
         ["He teaches science (He previously worked for 5 years as an engineer.) at the local University."]),
        ("Her email is Jane.Doe@example.com. I sent her an email.",
         ["Her email is Jane.Doe@example.com.", "I sent her an email."]),
        ("The site is: https://www.example.50.com/new-site/awesome_content.html. Please check it out.",
         ["The site is: https://www.example.50.com/new-site/awesome_content.html.", "Please check it out."]),
        ("She turned to him, 'This is great.' she said.", ["She turned to him, 'This is great.' she said."]),
        ('She turned to him, "This is great." she said.', ['She turned to him, "This is great." she said.']),
        ('She turned to him, "This is great." She held the book out to show him.',
         ['She turned to him, "This is great."', "She held the book out to show him."]),
        ("Hello!! Long time no see.", ["Hello!!", "Long time no see."]),
        ("Hello?? Who is there?", ["Hello??", "Who is there?"]),
        ("Hello!? Is that you?", ["Hello!?", "Is that you?"]),
        ("Hello?! Is that you?", ["Hello?!", "Is that you?"]),
        ("1.) The first item 2.) The second item", ["1.) The first item", "2.) The second item"]),
        ("1.) The first item. 2.) The second item.", ["1.) The first item.", "2.) The second item."]),
        ("1) The first item 2) The second item", ["1) The first item", "2) The second item"]),
        ("1) The first item. 2) The second item.", ["1) The first item.", "2) The second item."]),
        ("1. The first item 2. The second item", ["1. The first item", "2. The second item"]),
        ("1. The first item. 2. The second item.", ["1. The first item.", "2. The second item."]),
        ("• 9. The first item • 10. The second item", ["• 9. The first item", "• 10. The second item"]),
        ("a. The first item b. The second item c. The third list item",
         ["a. The first item", "b. The second item", "c. The third list item"]),
        ("You can find it at N°. 1026.253.553. That is where the treasure is.",
         ["You can find it at N°. 1026.253.553.", "That is where the treasure is."]),
        ("She works at Yahoo! in the accounting department.", ["She works at Yahoo! in the accounting department."]),
        ("We make a good team, you and I. Did you see Albert I. Jones yesterday?",
         ["We make a good team, you and I.", "Did you see Albert I. Jones yesterday?"]),
        ("Thoreau argues that by simplifying one’s life, “the laws of the universe will appear less complex. . . .”",
         ["Thoreau argues that by simplifying one’s life, “the laws of the universe will appear less complex. . . .”"]),
        ('"Bohr [...] used the analogy of parallel stairways [...]" (Smith 55).',
         ['"Bohr [...] used the analogy of parallel stairways [...]" (Smith 55).']),
        ("I never meant that.... She left the store.", ["I never meant that....", "She left the store."]),
        ("I wasn’t really ... well, what I mean...see . . . what I'm saying, the thing is . . . I didn’t mean it.",
         ["I wasn’t really ... well, what I mean...see . . . what I'm saying, the thing is . . . I didn’t mean it."]),
    ],
    "en project": [  # the rule-based segmenter's own cases (tests/test_sentences.py before sentencex)
        ("It rained. Then it stopped.", ["It rained.", "Then it stopped."]),
        ("Dr. Smith met Mr. Jones. They talked.", ["Dr. Smith met Mr. Jones.", "They talked."]),
        ("Use a list, e.g. a stack. It works.", ["Use a list, e.g. a stack.", "It works."]),
        ("She moved to the U.S.A. in May. It was warm.", ["She moved to the U.S.A. in May.", "It was warm."]),
        ("J. R. R. Tolkien wrote it. Many read it.", ["J. R. R. Tolkien wrote it.", "Many read it."]),
        ("Pi is 3.14159 roughly. Yes.", ["Pi is 3.14159 roughly.", "Yes."]),
        ("Call os.path.join() here. Then return.", ["Call os.path.join() here.", "Then return."]),
        ("Really? Yes! Fine.", ["Really?", "Yes!", "Fine."]),
        ('He said "Stop." Then he left.', ['He said "Stop."', "Then he left."]),
        ("(It ended.) Next came more.", ["(It ended.)", "Next came more."]),
        ("Wait... What now?", ["Wait...", "What now?"]),
        ("version 2. 3 items were left.", ["version 2.", "3 items were left."]),
        ("lower case. after a stop stays joined", ["lower case. after a stop stays joined"]),
        ("no punctuation at all", ["no punctuation at all"]),
        ("A line\nwrapped here. Next one.", ["A line\nwrapped here.", "Next one."]),
    ],
    "de": [
        ("Nach § 3 Abs. 2 des Vertrags gilt das. Dann folgt mehr.",
         ["Nach § 3 Abs. 2 des Vertrags gilt das.", "Dann folgt mehr."]),
        ("Das gilt für Mieter bzw. Vermieter. Beide zahlen.", ["Das gilt für Mieter bzw. Vermieter.", "Beide zahlen."]),
        ("Man nehme z. B. einen Apfel. Er ist rot.", ["Man nehme z. B. einen Apfel.", "Er ist rot."]),
        ("Man nehme z.B. einen Apfel. Er ist rot.", ["Man nehme z.B. einen Apfel.", "Er ist rot."]),
        ("Dr. Müller kam um 8 Uhr. Er war pünktlich.", ["Dr. Müller kam um 8 Uhr.", "Er war pünktlich."]),
        ("Es kamen ca. 200 Gäste. Alle blieben lange.", ["Es kamen ca. 200 Gäste.", "Alle blieben lange."]),
        ("Die Einheit wurde am 3. Oktober 1990 vollzogen. Seitdem ist das ein Feiertag.",
         ["Die Einheit wurde am 3. Oktober 1990 vollzogen.", "Seitdem ist das ein Feiertag."]),
        ("Er kam am 1. Mai zurück.", ["Er kam am 1. Mai zurück."]),
        ("Wie geht es dir? Mir geht es gut!", ["Wie geht es dir?", "Mir geht es gut!"]),
        ("Prof. Dr. Schmidt hält heute die Vorlesung. Sie beginnt um 10 Uhr.",
         ["Prof. Dr. Schmidt hält heute die Vorlesung.", "Sie beginnt um 10 Uhr."]),
        ("Der Preis beträgt 3,50 Euro. Das ist günstig.", ["Der Preis beträgt 3,50 Euro.", "Das ist günstig."]),
        ("Er wohnt in der Hauptstr. 5 in Berlin. Sie wohnt nebenan.",
         ["Er wohnt in der Hauptstr. 5 in Berlin.", "Sie wohnt nebenan."]),
        ("Im 19. Jahrhundert wuchs die Stadt. Heute ist sie groß.",
         ["Im 19. Jahrhundert wuchs die Stadt.", "Heute ist sie groß."]),
        ("Das regelt Art. 5 Abs. 1 GG. Die Presse ist frei.", ["Das regelt Art. 5 Abs. 1 GG.", "Die Presse ist frei."]),
        ("Er sagte: „Ich komme morgen.“ Dann ging er.", ["Er sagte: „Ich komme morgen.“", "Dann ging er."]),
        ("Bitte beachten Sie Nr. 4 der Hinweise. Danke.", ["Bitte beachten Sie Nr. 4 der Hinweise.", "Danke."]),
        ("Das war i. d. R. so. Heute nicht mehr.", ["Das war i. d. R. so.", "Heute nicht mehr."]),
        ("Der Termin ist am 24. Dezember. Bitte kommt alle.", ["Der Termin ist am 24. Dezember.", "Bitte kommt alle."]),
        ("Montag, 3. Oktober: Feiertag. Dienstag wieder Arbeit.",
         ["Montag, 3. Oktober: Feiertag.", "Dienstag wieder Arbeit."]),
        ("Am 3. Okt. 1990 war es so weit. Alle feierten.", ["Am 3. Okt. 1990 war es so weit.", "Alle feierten."]),
    ],
    "zh": [
        ("今天天气很好。我们去公园吧！你来吗？", ["今天天气很好。", "我们去公园吧！", "你来吗？"]),
        ("他说：“我明天来。”然后他走了。", ["他说：“我明天来。”", "然后他走了。"]),
        ("价格是3.5元。很便宜。", ["价格是3.5元。", "很便宜。"]),
        ("你好！！你是谁？", ["你好！！", "你是谁？"]),
        ("我们学习Python 3.12的新功能。它很有用。", ["我们学习Python 3.12的新功能。", "它很有用。"]),
        ("这是第一句话。 这是第二句话。", ["这是第一句话。", "这是第二句话。"]),
    ],
    "ja": [
        ("今日は晴れです。明日は雨でしょう。", ["今日は晴れです。", "明日は雨でしょう。"]),
        ("本当ですか？はい、本当です！", ["本当ですか？", "はい、本当です！"]),
        ("彼は「もう帰ります。」と言った。それから帰った。", ["彼は「もう帰ります。」と言った。", "それから帰った。"]),
        ("価格は3.5円です。安いですね。", ["価格は3.5円です。", "安いですね。"]),
        ("東京へ行きました。楽しかった！また行きたい。", ["東京へ行きました。", "楽しかった！", "また行きたい。"]),
    ],
    "ru": [
        ("Он пришёл домой. Она уже спала.", ["Он пришёл домой.", "Она уже спала."]),
        ("Это было в 1990 г. в Москве. Потом он уехал.", ["Это было в 1990 г. в Москве.", "Потом он уехал."]),
        ("Поэт А. С. Пушкин написал это. Все знают.", ["Поэт А. С. Пушкин написал это.", "Все знают."]),
        ("Цена 3.50 руб. за штуку. Дёшево!", ["Цена 3.50 руб. за штуку.", "Дёшево!"]),
        ("Вы придёте? Да! Конечно.", ["Вы придёте?", "Да!", "Конечно."]),
        ("Он сказал: «Я приду.» Потом ушёл.", ["Он сказал: «Я приду.»", "Потом ушёл."]),
    ],
    "el": [
        ("Ήρθε χθες. Έφυγε σήμερα.", ["Ήρθε χθες.", "Έφυγε σήμερα."]),
        ("Πού είσαι; Είμαι εδώ.", ["Πού είσαι;", "Είμαι εδώ."]),
        ("Η τιμή είναι 3.5 ευρώ. Είναι φθηνό.", ["Η τιμή είναι 3.5 ευρώ.", "Είναι φθηνό."]),
        ("Τι ωραία! Πάμε.", ["Τι ωραία!", "Πάμε."]),
        ("Αυτό είναι π.χ. ένα παράδειγμα. Τέλος.", ["Αυτό είναι π.χ. ένα παράδειγμα.", "Τέλος."]),
    ],
}


def real_documents() -> list[str]:
    from pipeline.corpus import pydoc_topics_text

    texts = [pydoc_topics_text()] + [open(p, encoding="utf-8").read()
                                     for p in sorted(glob.glob("/usr/share/common-licenses/*")) if os.path.isfile(p)]
    return [d for text in texts for d in text.split("\n\n") if d.strip()]


def segmenters() -> dict:
    """name -> fn(text, language) -> list of sentences, for every segmenter that is installed."""
    from pipeline.sentences import split_sentences

    takes_language = "language" in inspect.signature(split_sentences).parameters
    found = {"split_sentences": (lambda t, lang: split_sentences(t, lang)) if takes_language
             else (lambda t, lang: split_sentences(t))}
    try:
        import sentencex

        found["sentencex"] = lambda t, lang: sentencex.segment(lang, t)
    except ImportError:
        pass
    try:
        import pysbd

        pysbd_segmenter = functools.cache(lambda lang: pysbd.Segmenter(language=lang, clean=False))
        found["pysbd"] = lambda t, lang: pysbd_segmenter(lang).segment(t)
    except ImportError:
        pass
    try:
        from syntok import segmenter

        found["syntok"] = lambda t, lang: [t[s[0].offset:s[-1].offset + len(s[-1].value)]
                                           for p in segmenter.analyze(t) for s in p]
    except ImportError:
        pass
    try:
        import blingfire

        found["blingfire"] = lambda t, lang: blingfire.text_to_sentences(t).split("\n")
    except ImportError:
        pass
    try:
        from sentence_splitter import SentenceSplitter

        splitter = functools.cache(lambda lang: SentenceSplitter(language=lang))
        found["sentence-splitter"] = lambda t, lang: splitter(lang).split(t)
    except ImportError:
        pass
    return found


def accuracy(fn, cases, language) -> float:
    right = 0
    for text, expected in cases:
        try:
            right += [s.strip() for s in fn(text, language) if s.strip()] == expected
        except Exception:  # a language the segmenter does not know counts as wrong
            pass
    return right / len(cases)


def speed(fn, documents, repeats) -> float:
    megabytes = sum(len(d.encode()) for d in documents) / 1e6
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for d in documents:
            fn(d, "en")
        best = min(best, time.perf_counter() - start)
    return megabytes / best


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pipeline", default=ROOT, help="the checkout whose pipeline.sentences is measured")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    sys.path.insert(0, os.path.abspath(args.pipeline))
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})  # one core
    documents = real_documents()
    print(f"{len(documents):,} documents, {sum(len(d.encode()) for d in documents) / 1e6:.2f} MB")
    sets = list(GOLDEN)
    print(f"{'segmenter':<18}{'MB/s':>7}" + "".join(f"{s:>12}" for s in sets))
    for name, fn in segmenters().items():
        row = [accuracy(fn, GOLDEN[s], s.split()[0]) for s in sets]
        print(f"{name:<18}{speed(fn, documents, args.repeats):>7.1f}" + "".join(f"{100 * a:>11.0f}%" for a in row))


if __name__ == "__main__":
    main()
