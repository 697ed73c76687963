"""Reading what the user said: CEL functions over message text and the trajectory (contract §6.1).

``affirmative(text)``: an explicit, unqualified yes. ``negative(text)``: an explicit no, refusal or
stop. Both read the text alone, never the question it answers, in English, French, Spanish, German,
Portuguese, Italian and Dutch; they are never both true.

1. Folding: case-folded (``ß`` → ``ss``), curly apostrophes straightened, accents dropped (NFKD
   without combining marks), except where the accent decides the word: ``sí``/``sì`` (yes) against
   ``si`` (if), ``más`` (more) against ``mas`` (but), ``só`` (only), ``já`` (already, not ``ja``).
   English contractions are expanded (``don't``, ``dont`` → ``do not``); ``non-refundable`` is one
   word.
2. Tokens: sentences end at ``. ! ? ; …`` and line breaks; clauses at ``, :``, brackets, quotes and
   a spaced dash; words keep their apostrophes (``d'accord``) and split at hyphens (``allez-y``);
   👍 👌 ✅ ✔ 🆗 are yes, 👎 ❌ 🚫 no, ✋ 🛑 stop.
3. Markers: each clause is matched left to right, longest phrase first, against word lists per
   language in eleven categories: neutral idioms (``no problem``, ``why not``, ``kein Problem``:
   consumed, so their ``no`` negates nothing), hesitation (``not sure``, ``maybe``, ``no lo sé``),
   stop (``wait``, ``hold on``, ``not yet``, ``pas encore``), refusal (``no``, ``nope``, ``nein``,
   ``não``), yes, condition (``if``, ``only``, ``unless``, ``wenn``, ``se o``), contrast (``but``,
   ``actually``, ``mais``, ``pero``, ``aber``), question (a question word opening a clause; any
   ``?``), request (``I'd like``, ``can you``, ``quiero``), addition (``also``, ``aussi``) and
   negation (``not``, ``ne``/``pas``, ``nicht``, ``kein``, ``não``, ``niet``). A phrase may be
   constrained: ``^`` at the start of its clause (``wait``, ``stop``, ``what``), ``=`` alone in it
   but for filler and politeness words (``confirm``, ``right``, ``fine``), ``$`` at its end
   (``first``), ``>`` before its end or a yes (``si, adelante`` is yes, ``si el precio...`` a
   condition), ``!`` at the start and not after a yes (``yes, no bags`` is partial, not a refusal).
4. Negation scope: a yes with a negation among the three words before it, or ``not no pas nicht
   niet não non`` among the two after it, in its clause and with no other marker between, is a
   refusal (``not correct``, ``don't proceed``, ``absolutely not``, ``claro que no``, ``mach das
   nicht``; but ``oui mais pas le retour`` is partial). So is a clause of negation and filler
   words only (``nicht``, ``please don't``).
5. Verdicts: ``negative`` = a refusal, stop or negated yes anywhere. ``affirmative`` = a yes and no
   refusal, stop, negation, condition, contrast, hesitation, question or addition anywhere, nor a
   request in a sentence without a yes (``Yes. I'd like to change my flight`` answers something
   else; ``Yes, I'd like to proceed`` does not).

Known limits: without the question, ``No, go ahead`` (to "any objection?") is a refusal and ``no
thanks`` (to "insurance?") refuses more than the insurance. Fail-closed by design: hedged or mixed
answers (``yes, if possible``, ``yes, no bags``, ``I think so``, ``yes, I don't want insurance``)
are not a yes, and ``no wait, yes`` stays negative. A request in the yes's own sentence passes
(``yes, and add a bag``). Misspellings, other languages and sarcasm are not understood. A bare yes
to an unrelated question is a yes: ``confirmed_after`` is the guard for that.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from functools import lru_cache
from typing import Any, NamedTuple

# Categories, in the order phrases of equal length are tried; NEUTRAL phrases are consumed unsignalled.
NEUTRAL, HESITATE, STOP, REFUSE, YES, CONDITION, CONTRAST = ("Z", "H", "S", "N", "Y", "C", "K")
QUESTION, REQUEST, ADDITION, NEGATION, NEGATED_YES = ("Q", "R", "A", "G", "X")
BLOCKING = frozenset({HESITATE, STOP, REFUSE, NEGATED_YES, CONDITION, CONTRAST, QUESTION, REQUEST, ADDITION, NEGATION})
NEGATIVE = frozenset({STOP, REFUSE, NEGATED_YES})

_LEXICON = {
    NEUTRAL: """
        no problem|no problems|not a problem|no problem at all|no worries|no worry|no doubt|no rush|no hurry|why not
        do not worry|no need to worry|can not wait|could not be better|make sure|be sure|no other questions
        no further questions|no more questions|no other requests|do not need anything else|nothing else
        do not have any other questions|do not have any more questions|do not have any other requests
        pas de probleme|pas de souci|pas de soucis|pourquoi pas|ne vous inquietez pas|ne t'inquiete pas|sans doute
        no hay problema|no pasa nada|ningun problema|no te preocupes|no se preocupe|por que no|sin problema
        no tengo mas preguntas|nada mas|nada mas_more|sin duda|kein problem|keine sorge|keine ursache|warum nicht
        nicht schlecht|keine weiteren fragen|sem problema|sem problemas|nao tem problema|nao ha problema
        nao se preocupe|por que nao|porque nao|sem duvida|nenhum problema|nessun problema|non c'e problema
        non preoccuparti|non si preoccupi|perche no|perche non|senza dubbio|senza problemi|geen probleem|geen zorgen
        waarom niet|geen punt|zonder twijfel|geen verdere vragen""",
    HESITATE: """
        not sure|not so sure|not certain|unsure|do not know|no idea|maybe|perhaps|probably|i guess|i suppose
        i think so|let me think|let me check|let me see|let me ask|need to think|think about it|not entirely sure
        je ne sais pas|sais pas|peut etre|pas sur|pas certain|je pense|je crois|reflechir|je vais voir|no lo se
        no se|no estoy seguro|no estoy segura|quizas|quiza|tal vez|a lo mejor|creo que si|supongo|puede ser|pode ser
        dejame pensar|lo pienso|pensarlo|weiss nicht|nicht sicher|vielleicht|moglicherweise|ich glaube|ich denke
        mal sehen|uberlegen|keine ahnung|nao sei|ainda nao sei|nao tenho certeza|talvez|acho que|acho|vou pensar
        deixa eu pensar|sei la|non so|non lo so|non sono sicuro|non sono sicura|forse|credo|penso|ci penso|vediamo
        boh|weet niet|weet het niet|niet zeker|misschien|ik denk|even kijken|geen idee""",
    STOP: """
        ^wait|wait a second|wait a minute|wait a moment|wait a sec|hold on|hang on|hold off|^stop|^pause|not yet
        not now|not so fast|never mind|nevermind|forget it|forget that|=cancel that|scratch that|changed my mind
        change of plans|^one moment|^one sec|^one second|^just a moment|^just a second|^just a minute|let's wait
        abort|^attends|^attendez|^arrete|^arretez|pas encore|pas maintenant|pas tout de suite|laisse tomber
        laissez tomber|oublie ca|oubliez ca|^un instant|^un moment|change d'avis|^espera|^espere|^esperen
        ^un momento|^un segundo|=para|^alto|^detente|todavia no|aun no|ahora no|olvidalo|olvidelo|cambie de opinion
        ^warte|^warten sie|^moment|^einen moment|^stopp|=halt|noch nicht|jetzt nicht|vergiss es|vergessen sie es
        abbrechen|anders uberlegt|^pare|ainda nao|agora nao|esquece|esqueca|mudei de ideia|^um momento|^calma|^pera
        ^perai|^aspetta|^aspetti|^fermati|^ferma|non ancora|non ora|non adesso|lascia perdere|lasci perdere
        cambiato idea|^un attimo|^wacht|nog niet|nu niet|laat maar|vergeet het|van gedachten veranderd|^even wachten
        ^momentje|✋|🛑""",
    REFUSE: """
        !no|nope|nah|no thanks|no thank you|no way|do not want|would rather not|rather not|not really|not at all
        let's not|=do not|=please do not|do not do anything|i decline|not interested|that's wrong|that is wrong
        =wrong|=incorrect|not right|i said no|the answer is no|do not think so|!non|non merci|pas du tout
        pas question|hors de question|surtout pas|je refuse|veux pas|c'est faux|=faux|pas ca|ne faites pas
        ne le faites pas|ne fais pas|pense pas|crois pas|no gracias|para nada|de ninguna manera|ni hablar|no quiero
        no lo hagas|no lo haga|no hagas|no haga|mejor no|prefiero que no|creo que no|=incorrecto|!nein|!nee
        nein danke|auf keinen fall|keinesfalls|bitte nicht|lieber nicht|will nicht|mochte nicht|=falsch
        das ist falsch|glaube nicht|nicht machen|nicht buchen|!nao|nao obrigado|nao obrigada|de jeito nenhum
        nem pensar|nao quero|melhor nao|acho que nao|=errado|esta errado|nao faca|no grazie|per niente|per nulla
        neanche per sogno|non voglio|meglio di no|credo di no|penso di no|=sbagliato|e sbagliato|non farlo
        nee dank je|nee bedankt|liever niet|wil niet|niet doen|=fout|denk het niet|ik denk het niet|ich glaube nicht
        ich denke nicht|je pense que non|je crois que non|geen sprake van|👎|❌|🚫""",
    YES: """
        yes|yeah|yea|yep|yup|yes please|sure|sure thing|for sure|ok|okay|okey|=k|kk|alright|all right|=confirm
        i confirm|confirmed|i can confirm|go ahead|go for it|proceed|please proceed|let's do it|do it|=go on
        that's correct|correct|that's right|=right|sounds good|sounds great|looks good|all good|good to go|=good
        that's good|=fine|that's fine|fine by me|that works|works for me|=perfect|absolutely|definitely|certainly
        of course|indeed|affirmative|exactly|agreed|i agree|approved|i approve|book it|book that|book them
        please book|please do|do so|make it so|by all means|let's go|oui|ouais|ouaip|d'accord|dac|allez y|vas y|va y
        allons y|je confirme|=confirme|c'est confirme|c'est bon|c'est correct|c'est ca|c'est parfait|ca marche
        ca me va|ca va|parfait|exactement|=exact|absolument|bien sur|evidemment|tout a fait|certainement|volontiers
        entendu|=go|procedez|faites le|fais le|je valide|=valide|banco|carrement|si_yes|>si|claro|claro que si
        por supuesto|de acuerdo|vale|dale|adelante|siga|procede|proceda|proceder|confirmo|confirmado|lo confirmo
        correcto|es correcto|exacto|exactamente|perfecto|hazlo|hagalo|esta bien|muy bien|=bien|listo|sale|=va|venga
        orale|eso es|asi es|efectivamente|desde luego|con gusto|=seguro|ja|jawohl|jap|jep|=jo|genau|einverstanden
        fortfahren|fahren sie fort|mach das|mach es|mach's|machen sie das|machen sie es|machen wir|mach weiter
        machen sie weiter|=weiter|in ordnung|bestatige|ich bestatige|bestatigt|klar|na klar|sicher|naturlich
        selbstverstandlich|gerne|gern|passt|stimmt|das stimmt|richtig|korrekt|alles klar|leg los|=los|auf jeden fall
        absolut|=gut|sehr gut|perfekt|bitte buchen|sim|>pode|pode sim|pode prosseguir|prossiga|prosseguir
        pode seguir|pode fazer|pode ir|pode confirmar|pode continuar|pode mandar|esta bem|esta certo|esta correto
        ta bom|ta bem|ta certo|tudo bem|beleza|de acordo|com certeza|=isso|isso mesmo|e isso|exato|perfeito
        combinado|fechado|manda ver|vai em frente|siga em frente|=faca|faca isso|positivo|correto|certo|certamente
        va bene|procedi|procedere|confermo|confermato|esatto|esattamente|perfetto|vai pure|vai avanti|=vai|fallo
        fai pure|assolutamente|giusto|corretto|senz'altro|d'accordo|d'accordissimo|volentieri|benissimo|molto bene
        ottimo|jazeker|zeker|prima|akkoord|is goed|=goed|oke|doe maar|ga je gang|ga uw gang|ga door|ga verder
        ga maar door|klopt|dat klopt|bevestig|ik bevestig|bevestigd|in orde|natuurlijk|graag|uiteraard|doe het|👍|👌
        ✅|✔|🆗""",
    CONDITION: """
        if|only|unless|provided|providing|as long as|assuming|depending|depends|except|excluding|apart from
        other than|in case|on condition|before|beforehand|$first|when you|once you|si|seulement|uniquement
        a condition|pourvu|tant que|a moins|sauf|excepte|hormis|d'abord|avant|solo|solamente|unicamente|excepto
        salvo|a menos|siempre que|siempre y cuando|con tal|en caso|depende|primero|antes|wenn|falls|sofern|nur
        ausser|solange|vorausgesetzt|unter der bedingung|es sei denn|abhangig|kommt darauf an|zuerst|vorher|erst
        se o|se a|se os|se as|se um|se uma|se for|se forem|se nao|se possivel|se puder|se tiver|se houver|se custar
        se der|se voce|se eu|se ele|se ela|se estiver|se ficar|so se|so_only|apenas|somente|exceto|desde que
        contanto que|caso|se il|se e|se costa|se non|se possibile|se puoi|se c'e|se ci|soltanto|tranne|eccetto
        purche|a patto|a meno|dipende|prima di|als het|als de|als ik|als u|als je|als dat|indien|mits|tenzij|alleen
        behalve|zolang|op voorwaarde|hangt ervan af|eerst""",
    CONTRAST: """
        but|however|though|although|actually|instead|rather|on second thought|mais|cependant|pourtant|par contre
        plutot|en fait|toutefois|pero|sin embargo|aunque|mas|en realidad|en cambio|sino|aber|jedoch|allerdings
        sondern|eigentlich|obwohl|stattdessen|lieber|porem|contudo|entretanto|na verdade|alias|em vez|ao inves|ma
        tuttavia|anzi|invece|piuttosto|in realta|maar|echter|toch|eigenlijk|in plaats""",
    QUESTION: """
        ^what|^whats|^what's|^how|^why|^which|^where|^who|^when|^is it|^is that|^is this|^is there|^are there
        ^are you|^does it|^does that|^do you|^do i|^did you|^can i|^will it|^will i|^will that|^should i|^would it
        how much|^est ce|combien|^pourquoi|^comment|^quel|^quelle|^quels|^quelles|cuanto|cuanta|cuantos|cuantas
        ^por que|^cual|^donde|^wie|^was|^warum|^wieso|^welche|^welcher|^welches|^wann|^wo|wie viel|wieviel|quanto
        quanta|quantos|^qual|^quais|^onde|^o que|^cosa|^che cosa|^quale|^dove|^wat|hoeveel|^waarom|^hoe|^welke|^waar
        ^wanneer""",
    REQUEST: """
        i would like|i'd like|i want|i need|can you|could you|would you|will you|can we|could we|i'd prefer
        i would prefer|i prefer|je voudrais|j'aimerais|je veux|je souhaite|pouvez vous|pourriez vous|peux tu|quiero
        quisiera|me gustaria|necesito|puede|podria|puedes|prefiero|ich mochte|ich will|ich brauche|ich hatte gern
        konnen sie|konnten sie|kannst du|quero|queria|gostaria|preciso|voce pode|poderia|prefiro|vorrei|voglio
        ho bisogno|puoi|potrebbe|preferisco|ik wil graag|ik wil|ik zou graag|kunt u|kun je|ik heb nodig""",
    ADDITION: """
        also|additionally|in addition|one more thing|another thing|aussi|egalement|en plus|de plus|tambien|ademas
        auch|ausserdem|zusatzlich|tambem|alem disso|anche|inoltre|ook|bovendien""",
    NEGATION: """
        not|no|never|nor|neither|ne|pas|jamais|nunca|ni|tampoco|jamas|nicht|kein|keine|keinen|keinem|keiner|keines
        nie|niemals|nao|nem|non|niet|geen|nooit|wrong|incorrect|faux|falsch|errado|incorrecto|incorreto|sbagliato
        fout""",
}

# Politeness, interjections, address and yes words: what may stand beside a "^", "=", "$" phrase.
_FILLER_WORDS = """
    please pls plz thanks thank you thx ty cheers oh ah um umm uh hmm hm well so and then just very much now
    really do today sir madam ma'am maam bitte danke schon vielen dank merci beaucoup svp stp s'il vous
    plait por favor gracias muchas senor senora obrigado obrigada grazie mille prego per favore alstublieft
    aub dank je wel bedankt u dankjewel yes ok okay sure oui si_yes ja sim actually but although though no
    👍 👌 ✅
"""
FILLER = frozenset(_FILLER_WORDS.split())
# Negation particles that may follow the yes they negate ("absolutely not", "mach das nicht").
POSTPOSED = frozenset({"not", "no", "pas", "nicht", "niet", "nao", "non"})


class _Phrase(NamedTuple):
    words: tuple[str, ...]
    category: str
    flag: str  # "", "^", "=", "$", ">", "!"


def _phrases() -> dict[str, tuple[_Phrase, ...]]:
    found: dict[str, list[_Phrase]] = {}
    for category, lines in _LEXICON.items():
        for entry in lines.replace("\n", "|").split("|"):
            entry = entry.strip()
            flag = entry[0] if entry and entry[0] in "^=$>!" else ""
            text = entry[len(flag) :]
            for variant in {text, text.replace("'", "")}:  # "that's" and "thats", "d'accord" and "daccord"
                if variant:
                    words = tuple(variant.split())
                    found.setdefault(words[0], []).append(_Phrase(words, category, flag))
    order = {category: rank for rank, category in enumerate(_LEXICON)}
    return {first: tuple(sorted(ps, key=lambda p: (-len(p.words), order[p.category]))) for first, ps in found.items()}


PHRASES = _phrases()

_APOSTROPHES = str.maketrans({c: "'" for c in "\u2019\u2018\u02bc\u00b4`"})
# Words whose accent decides what they mean: replaced before accents are dropped.
_ACCENTED_WORDS = {"sí": "si_yes", "sì": "si_yes", "más": "mas_more", "só": "so_only", "já": "ja_already"}
_ACCENTED = re.compile(r"\b(?:s[íì]|más|só|já)(?!\w)")
_MARKS = re.compile(r"[\u0300-\u036f\ufe0e\ufe0f]+")  # combining accents, emoji variation selectors
# English contractions, with or without the apostrophe: "don't", "dont" → "do", "not".
_AUXILIARIES = "do does did is are was were has have had could would should must need ai"
_CONTRACTED = {f"{aux}{suffix}": (aux, "not") for aux in _AUXILIARIES.split() for suffix in ("n't", "nt")}
_CONTRACTED |= {"can't": ("can", "not"), "cant": ("can", "not"), "cannot": ("can", "not"), "won't": ("will", "not")}
_CONTRACTED |= {"wont": ("will", "not"), "shan't": ("shall", "not")}


# A word (hyphens split: "allez-y"), an emoji of note, or punctuation ending a sentence or a clause.
_PIECE = re.compile(r"\w+(?:'\w+)*|[👍👌✅✔🆗👎❌🚫✋🛑]|[.!?¿;\n\r…]+|[,:\t()\[\]{}\"“”«»]+|\s[-\u2013\u2014]+\s")
_EMOJI = frozenset("👍👌✅✔🆗👎❌🚫✋🛑")
_SENTENCE_END = frozenset(".!?¿;\n\r…")
_CACHED_LENGTH = 4096


def _fold(text: str) -> str:
    text = text.translate(_APOSTROPHES).casefold()
    if not text.isascii():
        text = _ACCENTED.sub(lambda m: f" {_ACCENTED_WORDS[m[0]]} ", unicodedata.normalize("NFC", text))
        text = _MARKS.sub("", unicodedata.normalize("NFKD", text)).casefold()
    return text.replace("non-", "non").replace("no-", "no")  # non-refundable, no-show: not a negation


def _yes_at(tokens: list[str], start: int) -> bool:
    """A yes phrase (without a constraint) starts at ``start``."""
    return any(
        p.category == YES and not p.flag and tuple(tokens[start : start + len(p.words)]) == p.words
        for p in PHRASES.get(tokens[start], ())
    )


def _flag_ok(phrase: _Phrase, tokens: list[str], start: int, yes_before: bool) -> bool:
    end = start + len(phrase.words)
    before, after = tokens[:start], tokens[end:]
    initial = all(t in FILLER for t in before)
    alone = initial and all(t in FILLER for t in after)
    if phrase.flag == "^":
        return initial
    if phrase.flag == "=":
        return alone
    if phrase.flag == "$":
        return all(t in FILLER for t in after)
    if phrase.flag == ">":
        return not after or after[0] in FILLER or _yes_at(tokens, end)
    if phrase.flag == "!":
        return alone or (initial and not yes_before)
    return True


def _clause_signals(tokens: list[str], yes_before: bool) -> tuple[set[str], bool]:
    """The categories found in one clause's tokens; and whether it holds a yes."""
    found: list[tuple[str, int, int]] = []  # (category, start, end)
    free = 0  # tokens before this one are part of a phrase found
    for i in [i for i, token in enumerate(tokens) if token in PHRASES or token[:2] == "n'"]:
        if i < free:
            continue
        for phrase in PHRASES.get(tokens[i], ()):
            end = i + len(phrase.words)
            if (end == i + 1 or tuple(tokens[i:end]) == phrase.words) and (
                not phrase.flag or _flag_ok(phrase, tokens, i, yes_before)
            ):
                found.append((phrase.category, i, end))
                yes_before = yes_before or phrase.category == YES
                free = end
                break
        else:
            if tokens[i][:2] == "n'":  # French elided negation: n'est, n'allez
                found.append((NEGATION, i, i + 1))
    if not found:
        return set(), False
    result = {category for category, _, _ in found}
    if NEGATION not in result:
        return result, YES in result
    negations = [start for category, start, _ in found if category == NEGATION]
    others = [start for category, start, _ in found if category != NEGATION]
    if YES in result:
        result.discard(YES)
        for category, start, end in found:
            if category == YES:
                result.add(NEGATED_YES if any(_negates(tokens, n, start, end, others) for n in negations) else YES)
    if all(k in negations or t in FILLER for k, t in enumerate(tokens)):
        result.add(REFUSE)  # nothing but negation: "nicht", "please don't"
    return result, YES in result


def _negates(tokens: list[str], n: int, start: int, end: int, others: list[int]) -> bool:
    """The negation at ``n`` is in the scope of the yes at start:end, with nothing of weight between."""
    near = start - 3 <= n < start or (end <= n < end + 2 and tokens[n] in POSTPOSED)
    between = range(n + 1, start) if n < start else range(end, n)
    return near and not any(k in between for k in others)


def _analyse(text: str) -> frozenset[str]:
    folded = _fold(text)
    result: set[str] = {QUESTION} if "?" in folded or "¿" in folded else set()
    yes_before = False
    sentence: set[str] = set()
    clause: list[str] = []
    for piece in [*_PIECE.findall(folded), "."]:
        if piece[0].isalnum() or piece[0] == "_" or piece in _EMOJI:
            contracted = _CONTRACTED.get(piece)
            clause.extend(contracted) if contracted else clause.append(piece)
            continue
        if clause:
            found, has_yes = _clause_signals(clause, yes_before)
            sentence |= found
            yes_before = yes_before or has_yes
            clause = []
        if piece[0] in _SENTENCE_END:
            if YES in sentence:  # "Yes, I'd like to proceed", "yes, can you go ahead": one answer
                sentence.discard(REQUEST)
            result |= sentence
            sentence = set()
    return frozenset(result)


_analyse_cached = lru_cache(maxsize=2048)(_analyse)


def signals(text: str, function: str = "signals") -> frozenset[str]:
    """The marker categories found in ``text`` (one letter each, see the module's constants)."""
    _require_str(function, "text", text)
    return _analyse_cached(text) if len(text) <= _CACHED_LENGTH else _analyse(text)


def affirmative(text: str) -> bool:
    """An explicit yes, not negated, conditional, partial, hesitant, questioning or asking more."""
    found = signals(text, "affirmative")
    return YES in found and not (found & BLOCKING)


def negative(text: str) -> bool:
    """An explicit no, refusal, stop or negated yes ("no", "don't proceed", "wait", "pas encore")."""
    return bool(signals(text, "negative") & NEGATIVE)


def _cel_type(value: Any) -> str:
    names = {bool: "bool", int: "int", float: "double", str: "string", bytes: "bytes", list: "list", dict: "map"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


def _require_str(function: str, name: str, value: Any) -> None:
    if not isinstance(value, str):
        raise TypeError(f"{function}(): {name} must be a string, got {_cel_type(value)}")


def _messages(function: str, trajectory: Any) -> list[tuple[str, str]]:
    """(role, content) of every message step, in order."""
    if not isinstance(trajectory, list):
        raise TypeError(f"{function}(): trajectory must be a list of steps, got {_cel_type(trajectory)}")
    messages = []
    for index, step in enumerate(trajectory):
        if not isinstance(step, dict):
            raise TypeError(f"{function}(): trajectory[{index}] must be a map (a step), got {_cel_type(step)}")
        content = step.get("content")
        if step.get("kind", "message") == "message" and isinstance(content, str):
            messages.append((str(step.get("role", "")), content))
    return messages


def last_user_message(trajectory: list[dict[str, Any]]) -> str:
    """The content of the trajectory's last user message; "" when the user never spoke."""
    messages = _messages("last_user_message", trajectory)
    return next((content for role, content in reversed(messages) if role == "user"), "")


def user_said(trajectory: list[dict[str, Any]], text: str) -> bool:
    """Some user message contains ``text`` (case-insensitive)."""
    _require_str("user_said", "text", text)
    needle = text.casefold()
    return any(role == "user" and needle in content.casefold() for role, content in _messages("user_said", trajectory))


def _mention(item: Any) -> str:
    if isinstance(item, float) and item.is_integer():
        item = int(item)  # params.amount 200.0 is mentioned as "200"
    return (item if isinstance(item, str) else str(item)).casefold()


def confirmed_after(trajectory: list[dict[str, Any]], mentions: list[Any]) -> bool:
    """The user said yes after the agent stated the details, and did not take it back.

    The last assistant message that mentions every item of ``mentions`` (case-insensitive
    substrings; numbers as text, 200.0 as "200"; an empty list: the last assistant message) must
    be followed by an affirmative user message, and no user message after that one may be
    negative or qualified (a condition, contrast, negation, hesitation, question or new request).
    A yes given before the details were (last) stated does not count.
    """
    if not isinstance(mentions, list):
        raise TypeError(f"confirmed_after(): mentions must be a list, got {_cel_type(mentions)}")
    needles = [_mention(item) for item in mentions]
    messages = _messages("confirmed_after", trajectory)
    stated = None
    for index, (role, content) in enumerate(messages):
        if role == "assistant" and all(needle in content.casefold() for needle in needles):
            stated = index
    if stated is None:
        return False
    confirmed = False
    for role, content in messages[stated + 1 :]:
        if role != "user":
            continue
        if affirmative(content):
            confirmed = True
        elif signals(content) & BLOCKING:  # taken back or put in doubt
            confirmed = False
    return confirmed


# What every rule context is given (approvals.policy.engine.rule_context). An argument of the wrong
# type raises TypeError, which the binding reports as the rule's error: the gate holds the action.
FUNCTIONS: dict[str, Callable[..., Any]] = {
    "affirmative": affirmative,
    "negative": negative,
    "last_user_message": last_user_message,
    "user_said": user_said,
    "confirmed_after": confirmed_after,
}
FUNCTION_NAMES = tuple(FUNCTIONS)
