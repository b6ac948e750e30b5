"""A German weather-report grammar: sentences with their gloss sequences in sign order.

Sign order differs from German word order, as in PHOENIX-2014T: time first, then the place
(topic), then what happens there; numbers are glossed one sign each; function words have no gloss.
Text is lower case with punctuation split off, like PHOENIX's `text_de`.
"""

from __future__ import annotations

import numpy as np

# --- vocabulary: (German, gloss) -------------------------------------------------------------------
_NUMBERS = ["null", "eins", "zwei", "drei", "vier", "fünf", "sechs", "sieben", "acht", "neun", "zehn", "elf",
            "zwölf", "dreizehn", "vierzehn", "fünfzehn", "sechzehn", "siebzehn", "achtzehn", "neunzehn", "zwanzig"]
_UNITS = ["", "ein", "zwei", "drei", "vier", "fünf", "sechs", "sieben", "acht", "neun"]
_GLOSS_CHARS = str.maketrans({"ä": "AE", "ö": "OE", "ü": "UE", "ß": "SS"})


def gloss_of(word: str) -> str:
    """German word -> PHOENIX-style gloss (upper case, umlauts spelled out)."""
    return word.translate(_GLOSS_CHARS).upper()


def number_word(n: int) -> str:
    """0..39 as a German number word."""
    if n <= 20:
        return _NUMBERS[n]
    tens = "zwanzig" if n < 30 else "dreißig"
    return tens if n % 10 == 0 else f"{_UNITS[n % 10]}und{tens}"


def ordinal_word(n: int) -> str:
    """1..31 -> 'ersten', 'zweiten', ... (dative/accusative after 'den')."""
    special = {1: "ersten", 3: "dritten", 7: "siebten", 8: "achten"}
    if n in special:
        return special[n]
    return number_word(n) + ("ten" if n < 20 else "sten")


_WEEKDAYS = ["montag", "dienstag", "mittwoch", "donnerstag", "freitag", "samstag", "sonntag"]
_MONTHS = ["januar", "februar", "märz", "april", "mai", "juni", "juli", "august", "september", "oktober",
           "november", "dezember"]
# Places: German phrase where something happens, gloss sequence.
_REGIONS = [
    ("im norden", "NORD"), ("im süden", "SUED"), ("im osten", "OST"), ("im westen", "WEST"),
    ("im nordwesten", "NORDWEST"), ("im nordosten", "NORDOST"), ("im südwesten", "SUEDWEST"),
    ("im südosten", "SUEDOST"), ("in der mitte", "MITTE"), ("im ganzen land", "UEBERALL"),
    ("an der küste", "KUESTE"), ("an der nordsee", "NORDSEE"), ("an der ostsee", "OSTSEE"),
    ("in den alpen", "ALPEN"), ("am alpenrand", "ALPEN RAND"), ("im bergland", "BERG"),
    ("in den mittelgebirgen", "MITTELGEBIRGE"), ("im flachland", "FLACH LAND"), ("in den hochlagen", "HOCH OBEN"),
    ("in den tälern", "TAL"), ("an den flüssen", "FLUSS"), ("im harz", "HARZ"), ("im schwarzwald", "SCHWARZWALD"),
    ("in der eifel", "EIFEL"), ("im erzgebirge", "ERZGEBIRGE"), ("im bayerischen wald", "BAYERN WALD"),
    ("am rhein", "RHEIN"), ("an der donau", "DONAU"), ("an der elbe", "ELBE"), ("am bodensee", "BODENSEE"),
    ("auf sylt", "SYLT"), ("auf rügen", "RUEGEN"), ("im emsland", "EMSLAND"), ("in der lausitz", "LAUSITZ"),
    ("im allgäu", "ALLGAEU"), ("im sauerland", "SAUERLAND"), ("im vogtland", "VOGTLAND"),
]
_STATES = ["bayern", "hessen", "sachsen", "thüringen", "brandenburg", "niedersachsen", "schleswig-holstein",
           "mecklenburg-vorpommern", "nordrhein-westfalen", "rheinland-pfalz", "sachsen-anhalt", "baden-württemberg"]
_CITIES = ["berlin", "hamburg", "münchen", "köln", "frankfurt", "stuttgart", "dresden", "leipzig", "hannover",
           "bremen", "düsseldorf", "nürnberg", "rostock", "kiel", "freiburg", "erfurt", "magdeburg", "potsdam",
           "dortmund", "essen", "bonn", "mainz", "augsburg", "regensburg", "passau", "würzburg", "kassel",
           "göttingen", "münster", "osnabrück", "oldenburg", "lübeck", "schwerin", "cottbus", "chemnitz", "jena",
           "ulm", "konstanz", "karlsruhe", "mannheim", "heidelberg", "trier", "aachen", "bielefeld", "flensburg",
           "saarbrücken", "koblenz", "greifswald", "stralsund", "halle", "wiesbaden", "bamberg", "rosenheim",
           "ingolstadt", "bayreuth", "fulda", "gießen", "marburg", "siegen", "paderborn", "wuppertal", "bochum",
           "duisburg", "krefeld", "emden", "wilhelmshaven", "cuxhaven", "husum", "neubrandenburg", "görlitz",
           "zwickau", "plauen", "gera", "weimar", "eisenach", "dessau", "wittenberg", "stendal", "braunschweig",
           "wolfsburg", "hildesheim", "celle", "lüneburg", "landshut", "kempten", "lindau"]
_PLACES = _REGIONS + [(f"in {s}", gloss_of(s)) for s in _STATES] + [("im saarland", "SAARLAND")] \
    + [(f"in {c}", gloss_of(c)) for c in _CITIES]
# Where pressure systems sit: phrase after "über", gloss.
_SEAS = [("dem atlantik", "ATLANTIK"), ("skandinavien", "SKANDINAVIEN"), ("großbritannien", "ENGLAND"),
         ("frankreich", "FRANKREICH"), ("polen", "POLEN"), ("der nordsee", "NORDSEE"), ("osteuropa", "OST EUROPA"),
         ("dem mittelmeer", "MITTELMEER"), ("island", "ISLAND"), ("russland", "RUSSLAND"),
         ("den britischen inseln", "ENGLAND INSEL"), ("der biskaya", "BISKAYA")]
# Weather nouns: German, gender (m/f/n/pl), gloss.
_NOUNS = [("regen", "m", "REGEN"), ("schnee", "m", "SCHNEE"), ("schneeregen", "m", "SCHNEE REGEN"),
          ("nebel", "m", "NEBEL"), ("hagel", "m", "HAGEL"), ("sonnenschein", "m", "SONNE"), ("wolken", "pl", "WOLKE"),
          ("schauer", "pl", "SCHAUER"), ("gewitter", "pl", "GEWITTER"), ("wind", "m", "WIND"),
          ("frost", "m", "FROST"), ("glatteis", "n", "GLATT EIS"), ("nieselregen", "m", "NIESEL REGEN"),
          ("dauerregen", "m", "DAUER REGEN"), ("graupel", "m", "GRAUPEL"), ("bodenfrost", "m", "BODEN FROST"),
          ("hochnebel", "m", "HOCH NEBEL"), ("böen", "pl", "BOE"), ("sturmböen", "pl", "STURM BOE"),
          ("dunst", "m", "DUNST"), ("reif", "m", "REIF"), ("glätte", "f", "GLATT"), ("platzregen", "m", "PLATZ REGEN"),
          ("schneeschauer", "pl", "SCHNEE SCHAUER"), ("hitze", "f", "HITZE"), ("schwüle", "f", "SCHWUEL"),
          ("tau", "m", "TAU"), ("eisregen", "m", "EIS REGEN"), ("orkanböen", "pl", "ORKAN BOE"),
          ("wolkenbrüche", "pl", "WOLKE BRUCH"), ("sonne", "f", "SONNE")]
# Intensity adjectives (stem, gloss): the gloss follows the noun.
_INTENSITY = [("stark", "STARK"), ("kräftig", "KRAEFTIG"), ("heftig", "HEFTIG"), ("leicht", "LEICHT"),
              ("schwach", "SCHWACH"), ("dicht", "DICHT"), ("ergiebig", "VIEL"), ("anhaltend", "DAUER"),
              ("vereinzelt", "VEREINZELT"), ("örtlich", "ORT"), ("gefährlich", "GEFAHR"), ("teils", "TEILWEISE")]
# Predicative weather adjectives: German, gloss.
_STATES_ADJ = [("freundlich", "FREUNDLICH"), ("sonnig", "SONNE"), ("wolkig", "WOLKE"), ("trüb", "TRUEB"),
               ("heiter", "HEITER"), ("wechselhaft", "WECHSELHAFT"), ("trocken", "TROCKEN"), ("nass", "NASS"),
               ("kalt", "KALT"), ("warm", "WARM"), ("heiß", "HEISS"), ("mild", "MILD"), ("kühl", "KUEHL"),
               ("frostig", "FROST"), ("schwül", "SCHWUEL"), ("neblig", "NEBEL"), ("windig", "WIND"),
               ("stürmisch", "STURM"), ("regnerisch", "REGEN"), ("grau", "GRAU"), ("klar", "KLAR"),
               ("frisch", "FRISCH"), ("ungemütlich", "UNGEMUETLICH"), ("angenehm", "ANGENEHM"),
               ("bedeckt", "BEDECKT"), ("diesig", "DIESIG"), ("sommerlich", "SOMMER"), ("winterlich", "WINTER"),
               ("herbstlich", "HERBST"), ("frühlingshaft", "FRUEHLING"), ("eisig", "EIS"), ("feucht", "FEUCHT"),
               ("unbeständig", "UNBESTAENDIG")]
_COMPARATIVES = [("wärmer", "WARM"), ("kälter", "KALT"), ("freundlicher", "FREUNDLICH"), ("kühler", "KUEHL"),
                 ("milder", "MILD"), ("nasser", "NASS"), ("trockener", "TROCKEN"), ("sonniger", "SONNE"),
                 ("windiger", "WIND"), ("frischer", "FRISCH")]
_RAIN_VERBS = [("regnet es", "REGEN"), ("schneit es", "SCHNEE"), ("scheint die sonne", "SONNE"),
               ("stürmt es", "STURM"), ("blitzt und donnert es", "GEWITTER"), ("nieselt es", "NIESEL"),
               ("hagelt es", "HAGEL"), ("taut es", "TAUEN"), ("friert es", "FRIEREN")]
_HOW_OFTEN = [("kräftig", "STARK"), ("zeitweise", "ZEITWEISE"), ("anhaltend", "DAUER"),
              ("immer wieder", "IMMER-WIEDER"), ("nur wenig", "WENIG"), ("häufig", "OFT"), ("kaum", "KAUM"),
              ("länger", "LANG"), ("kurz", "KURZ"), ("überall", "UEBERALL")]
_WIND_DIRS = [("nord", "NORD"), ("nordost", "NORDOST"), ("ost", "OST"), ("südost", "SUEDOST"), ("süd", "SUED"),
              ("südwest", "SUEDWEST"), ("west", "WEST"), ("nordwest", "NORDWEST")]
_WIND_STRENGTH = [("schwach", "SCHWACH"), ("mäßig", "MAESSIG"), ("frisch", "FRISCH"), ("stark", "STARK"),
                  ("stürmisch", "STURM"), ("böig", "BOE")]
_TREND = [("steigen", "STEIGEN"), ("sinken", "SINKEN")]
_CLOSINGS = [("ich wünsche ihnen noch einen schönen abend", "ICH WUENSCHEN SCHOEN ABEND"),
             ("und nun die wettervorhersage", "JETZT WETTER WIE-AUSSEHEN"),
             ("liebe zuschauer guten abend", "LIEB ZUSCHAUER ABEND"),
             ("guten abend liebe zuschauer", "GUT ABEND LIEB ZUSCHAUER"),
             ("auf wiedersehen und bis morgen", "AUF-WIEDERSEHEN MORGEN"),
             ("das war das wetter", "WETTER FERTIG"), ("tschüss und einen schönen abend", "TSCHUESS SCHOEN ABEND")]
_PARTS = [("", ""), ("früh", "FRUEH"), ("vormittag", "VORMITTAG"), ("nachmittag", "NACHMITTAG"),
          ("abend", "ABEND"), ("nacht", "NACHT")]


def _time(rng: np.random.Generator) -> tuple[str, str]:
    """A time adverbial and its glosses (always first in sign order)."""
    kind = rng.integers(4)
    part, part_gloss = _PARTS[int(rng.integers(len(_PARTS)))]
    if kind < 2:
        day = ["heute", "morgen", "übermorgen"][int(rng.integers(3))]
        if day == "morgen" and part == "früh":
            return "morgen früh", "MORGEN FRUEH"
        return f"{day} {part}".strip(), f"{gloss_of(day)} {part_gloss}".strip()
    if kind == 2:
        day = _WEEKDAYS[int(rng.integers(7))]
        if part == "nacht":
            return f"in der nacht zum {day}", f"NACHT {gloss_of(day)}"
        if part == "früh":
            return f"am {day} früh", f"{gloss_of(day)} FRUEH"
        return f"am {day}{part}", f"{gloss_of(day)} {part_gloss}".strip()
    return [("am wochenende", "WOCHENENDE"), ("in der neuen woche", "NEU WOCHE"), ("in den nächsten tagen",
            "NAECHSTE TAG"), ("im laufe des tages", "TAG VERLAUF"), ("zum wochenende hin", "WOCHENENDE")][
        int(rng.integers(5))]


def _ending(stem: str, gender: str, case: str) -> str:
    """Strong adjective ending (no article): nominative or accusative."""
    if gender == "pl" or gender == "f":
        return stem + "e"
    if gender == "n":
        return stem + "es"
    return stem + ("er" if case == "nom" else "en")


def _pick(rng: np.random.Generator, items: list):
    return items[int(rng.integers(len(items)))]


def _temp(rng: np.random.Generator, low: int = -10, high: int = 36) -> tuple[str, str, int]:
    n = int(rng.integers(low, high + 1))
    if n < 0:
        return f"minus {number_word(-n)}", f"MINUS {gloss_of(number_word(-n))}", n
    return number_word(n), gloss_of(number_word(n)), n


def _sentence(rng: np.random.Generator) -> tuple[str, str]:
    """One (German sentence, gloss sequence) from a random template."""
    t, tg = _time(rng)
    p, pg = _pick(rng, _PLACES)
    k = int(rng.integers(14))
    if k == 0:
        noun, gender, ng = _pick(rng, _NOUNS)
        adj, ag = _pick(rng, _INTENSITY)
        return f"{t} gibt es {p} {_ending(adj, gender, 'acc')} {noun}", f"{tg} {pg} {ng} {ag}"
    if k == 1:
        (verb, vg), (how, hg) = _pick(rng, _RAIN_VERBS), _pick(rng, _HOW_OFTEN)
        return f"{t} {verb} {p} {how}", f"{tg} {pg} {vg} {hg}"
    if k == 2:
        a, ag_, lo = _temp(rng, -8, 28)
        b, bg, _ = _temp(rng, lo + 2, lo + 9)
        return f"die temperaturen erreichen {t} {a} bis {b} grad", f"{tg} TEMPERATUR {ag_} BIS {bg} GRAD"
    if k == 3:
        a, ag_, _ = _temp(rng, -5, 36)
        return f"{t} werden {p} {a} grad erreicht", f"{tg} {pg} {ag_} GRAD"
    if k == 4:
        trend, trg = _pick(rng, _TREND)
        a, ag_, _ = _temp(rng, -12, 30)
        return f"{t} {trend} die werte {p} auf {a} grad", f"{tg} {pg} TEMPERATUR {trg} {ag_} GRAD"
    if k == 5:
        (strength, sg), (d, dg) = _pick(rng, _WIND_STRENGTH), _pick(rng, _WIND_DIRS)
        return f"der wind weht {t} {p} {strength} aus {d}", f"{tg} {pg} WIND {dg} {sg}"
    if k == 6:
        adj, ag = _pick(rng, _STATES_ADJ)
        return f"{t} ist es {p} {adj}", f"{tg} {pg} {ag}"
    if k == 7:
        adj, ag = _pick(rng, _COMPARATIVES)
        return f"{t} wird es {p} {adj}", f"{tg} {pg} {ag} MEHR"
    if k == 8:
        a, ag_, _ = _temp(rng, 1, 15)
        return f"{t} gibt es {p} frost bis minus {a} grad", f"{tg} {pg} FROST MINUS {ag_} GRAD"
    if k == 9:
        system, sysg = _pick(rng, [("ein hoch", "HOCH"), ("ein tief", "TIEF"), ("ein kräftiges tief", "TIEF STARK")])
        where, wg = _pick(rng, _SEAS)
        noun, _, ng = _pick(rng, _NOUNS)
        return f"{system} über {where} bringt uns {t} {noun}", f"{wg} {sysg} {tg} {ng} KOMMEN"
    if k == 10:
        p2, pg2 = _pick(rng, [x for x in _PLACES if x[0] != p])
        v1, vg1 = _pick(rng, _RAIN_VERBS)
        a2, ag2 = _pick(rng, _STATES_ADJ)
        return f"{t} {v1} {p} , {p2} ist es dagegen {a2}", f"{tg} {pg} {vg1} {pg2} {ag2}"
    if k == 11:
        what, wg = _pick(rng, [("eine unwetterwarnung", "UNWETTER WARNUNG"), ("unwettergefahr", "UNWETTER GEFAHR"),
                               ("eine sturmwarnung", "STURM WARNUNG"), ("glättegefahr", "GLATT GEFAHR")])
        return f"{t} besteht {p} {what}", f"{tg} {pg} {wg}"
    if k == 12:
        day = _pick(rng, _WEEKDAYS)
        date = int(rng.integers(1, 32))
        month = _pick(rng, _MONTHS)
        return (f"und nun die wettervorhersage für {day} , den {ordinal_word(date)} {month}",
                f"JETZT WETTER WIE-AUSSEHEN {gloss_of(day)} {gloss_of(number_word(date))} {gloss_of(month)}")
    return _pick(rng, _CLOSINGS)


def weather_sentences(n: int, seed: int = 0) -> list[tuple[str, str]]:
    """n distinct (text, gloss) pairs, text tokenised like PHOENIX (' .' at the end)."""
    rng = np.random.default_rng(seed)
    seen: dict[str, str] = {}
    tries = 0
    while len(seen) < n:
        tries += 1
        if tries > 50 * n:
            raise ValueError(f"the weather grammar cannot make {n} distinct sentences")
        text, gloss = _sentence(rng)
        text = " ".join(text.split()) + " ."
        seen.setdefault(text, " ".join(gloss.split()))
    return list(seen.items())
