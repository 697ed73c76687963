"""Reading what the user said (contract §6.1): ``affirmative`` / ``negative`` over customer replies in
English, French, Spanish, German, Portuguese, Italian and Dutch, the trajectory helpers, and all of
them called from CEL with the functions every rule context is given. Pure unit tests: no database."""

from __future__ import annotations

from typing import Any

import cel
import pytest

from approvals.policy import engine
from approvals.policy.language import (
    FUNCTION_NAMES,
    FUNCTIONS,
    affirmative,
    confirmed_after,
    last_user_message,
    negative,
    user_said,
)
from tests.policy.test_policy_engine import policy, proposal, rule

YES, NO, NEITHER = (True, False), (False, True), (False, False)

PHRASES: list[tuple[str, tuple[bool, bool]]] = [
    # English: a plain yes, however punctuated
    ("Yes", YES),
    ("Yes!", YES),
    ("yes.", YES),
    ("YES PLEASE", YES),
    ("YES!!!", YES),
    ("yes 😊", YES),
    ("Yeah, go ahead.", YES),
    ("Yep, that's right.", YES),
    ("yup", YES),
    ("Sure, go for it", YES),
    ("ok", YES),
    ("OK.", YES),
    ("k", YES),
    ("Okay, please proceed.", YES),
    ("Yes, I confirm.", YES),
    ("Confirmed.", YES),
    ("Go ahead and book it.", YES),
    ("Please proceed with the cancellation.", YES),
    ("Let's do it!", YES),
    ("lets do it", YES),
    ("That's correct, thank you.", YES),
    ("thats correct", YES),
    ("Sounds good to me.", YES),
    ("Absolutely, do it.", YES),
    ("Yes, that all looks right, go ahead.", YES),
    ("Yes, please charge the Mastercard ending in 5512.", YES),
    ("Yes, I'd like to proceed.", YES),
    ("Alright, let's go with that.", YES),
    ("Yes, that's everything. Thanks!", YES),
    ("Correct, the traveller is Ana Ruiz, born 1988-11-02.", YES),
    ("Sure thing, please do.", YES),
    ("Yep, cancel booking 4TQ2ZP please.", YES),
    ("Please go ahead, I don't need anything else.", YES),
    ("Yes, the non-refundable fare is fine", YES),
    ("YES, GO AHEAD.", YES),
    ("yes,go ahead", YES),
    ("Yes - go ahead", YES),
    # emoji
    ("👍 yes please", YES),
    ("Yep 👍", YES),
    ("👍", YES),
    ("👍🏽", YES),
    ("✅", YES),
    ("ok 👌", YES),
    ("Yes 👍 go ahead", YES),
    ("👎", NO),
    # idioms that look negative
    ("no problem, go ahead", YES),
    ("No worries, book it.", YES),
    ("Not a problem at all, go ahead", YES),
    ("No doubt, that's correct", YES),
    ("Why not, let's do it", YES),
    ("Sure, why not", YES),
    ("Yes, I have no other questions", YES),
    ("no problem", NEITHER),
    ("No worries", NEITHER),
    ("Not a problem.", NEITHER),
    ("Why not", NEITHER),
    # English: no, stop, not now
    ("No.", NO),
    ("no", NO),
    ("Nope", NO),
    ("No thanks.", NO),
    ("Not yet.", NO),
    ("Not now, thanks", NO),
    ("Don't.", NO),
    ("Please don't", NO),
    ("Do not proceed.", NO),
    ("Cancel that.", NO),
    ("Stop!", NO),
    ("Wait.", NO),
    ("wait", NO),
    ("Hold on a second.", NO),
    ("hang on", NO),
    ("Never mind, forget it.", NO),
    ("No, don't do that.", NO),
    ("no, don't", NO),
    ("yes... actually no", NO),
    ("That's not correct.", NO),
    ("That isn't right", NO),
    ("I don't think so.", NO),
    ("I'd rather not.", NO),
    ("Absolutely not.", NO),
    ("Yes, go ahead \u2013 wait, no.", NO),
    ("Ok wait, what's the fee?", NO),
    ("Yes. Hold on, is this the basic economy fare?", NO),
    ("no, go ahead", NO),  # judged without its question: a leading "no" is a refusal
    # English: partial, conditional, hesitant, questioning, asking for more
    ("Yes, but not the second flight.", NEITHER),
    ("yes, but not the second one", NEITHER),
    ("Yes if the price is under $200.", NEITHER),
    ("Only if it's refundable.", NEITHER),
    ("Yes except the baggage part", NEITHER),
    ("Yes, as long as it doesn't cost more than $50.", NEITHER),
    ("Yeah, but use my other card instead.", NEITHER),
    ("Sure, but check the fare rules first", NEITHER),
    ("Yes, if possible", NEITHER),
    ("Yes, no checked bags.", NEITHER),
    ("I'm not sure.", NEITHER),
    ("Maybe, let me think about it.", NEITHER),
    ("Ok, I think so.", NEITHER),
    ("Hmm, probably.", NEITHER),
    ("Ok, let me check with my wife first", NEITHER),
    ("Can you first check whether there's a cheaper option?", NEITHER),
    ("What would it cost?", NEITHER),
    ("what would it cost", NEITHER),
    ("How much would that be in total", NEITHER),
    ("Is there a cheaper flight", NEITHER),
    ("Hmm, what are the other options?", NEITHER),
    ("Yes?", NEITHER),
    ("Yes, is that refundable?", NEITHER),
    ("Sure. Before you do that, what's the cancellation fee?", NEITHER),
    ("Yes, and also add travel insurance", NEITHER),
    ("Yes, I'm the account holder. I want to move my return flight to Friday and add a checked bag.", NEITHER),
    ("Yes that's my booking. Also, could you tell me how many bags I get?", NEITHER),
    ("Yes, I'm a gold member. Could you check whether my bags are free", NEITHER),
    ("Yes that's right, I booked it in March. Now I'd like to downgrade both legs to economy.", NEITHER),
    ("Thanks.", NEITHER),
    ("My user id is lena_kowalski_2207.", NEITHER),
    ("", NEITHER),
    ("   ", NEITHER),
    # French
    ("Oui", YES),
    ("Oui, allez-y.", YES),
    ("oui, s'il vous plaît", YES),
    ("D'accord, je confirme.", YES),
    ("C'est bon pour moi", YES),
    ("Vas-y !", YES),
    ("Oui oui, c'est correct.", YES),
    ("Parfait, merci", YES),
    ("Ouais ça marche", YES),
    ("Ca marche", YES),
    ("Tout à fait, vous pouvez procéder.", YES),
    ("Pas de souci, allez-y", YES),
    ("Pas de problème, allez-y", YES),
    ("Non", NO),
    ("Non merci.", NO),
    ("Pas du tout.", NO),
    ("Pas encore", NO),
    ("Attendez, je réfléchis.", NO),
    ("Ne le faites pas", NO),
    ("Je ne suis pas sûr", NEITHER),
    ("Oui mais pas le vol retour", NEITHER),
    ("oui mais pas le deuxième", NEITHER),
    ("D'accord, mais sans l'assurance", NEITHER),
    ("Oui, si c'est remboursable", NEITHER),
    ("Seulement si le prix ne change pas", NEITHER),
    ("Oui, sauf les bagages", NEITHER),
    ("Combien ça coûte ?", NEITHER),
    ("Pourquoi pas", NEITHER),
    # Spanish
    ("Sí", YES),
    ("si", YES),
    ("Sí, adelante", YES),
    ("si, adelante", YES),
    ("Si, claro", YES),
    ("Sí, sí, claro", YES),
    ("si señor", YES),
    ("De acuerdo, procede.", YES),
    ("Claro que sí", YES),
    ("Vale, confirmo.", YES),
    ("Dale", YES),
    ("Sí, por favor, hazlo.", YES),
    ("Está bien, gracias", YES),
    ("Esta bien", YES),
    ("Correcto", YES),
    ("No hay problema, adelante", YES),
    ("Sin problema, adelante", YES),
    ("No", NO),
    ("No, gracias", NO),
    ("No lo hagas", NO),
    ("Todavía no", NO),
    ("Espera un momento", NO),
    ("Claro que no", NO),
    ("No lo sé", NEITHER),
    ("Sí, pero solo el vuelo de ida", NEITHER),
    ("sí, pero sin seguro", NEITHER),
    ("Claro, pero antes dime el total", NEITHER),
    ("Sí, si el precio no sube", NEITHER),
    ("Si el precio es menor, sí", NEITHER),
    ("Solo si es reembolsable", NEITHER),
    ("¿Cuánto cuesta?", NEITHER),
    ("Quizás, déjame pensarlo", NEITHER),
    # German
    ("Ja", YES),
    ("Ja, bitte fortfahren.", YES),
    ("Genau, so machen wir das.", YES),
    ("Einverstanden", YES),
    ("In Ordnung, ich bestätige.", YES),
    ("ich bestatige", YES),
    ("Bestätigt", YES),
    ("Ja, mach das", YES),
    ("Passt, danke!", YES),
    ("Na klar", YES),
    ("Ja gerne", YES),
    ("Jawohl", YES),
    ("Kein Problem, machen Sie es", YES),
    ("Nein", NO),
    ("Nein danke", NO),
    ("Nö", NO),
    ("Nicht", NO),
    ("Bitte nicht", NO),
    ("Noch nicht", NO),
    ("Warte mal", NO),
    ("Auf keinen Fall", NO),
    ("Das stimmt nicht", NO),
    ("Mach das nicht", NO),
    ("Ja, aber nur den Hinflug", NEITHER),
    ("Einverstanden, aber bitte ohne Versicherung", NEITHER),
    ("Ja, wenn es erstattungsfähig ist", NEITHER),
    ("Ich weiß nicht", NEITHER),
    ("Vielleicht später", NEITHER),
    ("Was kostet das?", NEITHER),
    # Portuguese
    ("Sim", YES),
    ("Sim, pode prosseguir.", YES),
    ("Pode", YES),
    ("Claro, confirmo.", YES),
    ("Está bem", YES),
    ("Beleza, pode fazer", YES),
    ("De acordo", YES),
    ("Tá bom, obrigado", YES),
    ("Tudo bem, pode seguir", YES),
    ("Isso mesmo", YES),
    ("Com certeza!", YES),
    ("Sem problema, pode seguir", YES),
    ("Sim, claro, pode cancelar", YES),
    ("Não", NO),
    ("Nao", NO),
    ("Não, obrigado", NO),
    ("Ainda não", NO),
    ("Não, ainda não", NO),
    ("Espera aí", NO),
    ("De jeito nenhum", NO),
    ("Não faça isso", NO),
    ("Sim, mas só a ida", NEITHER),
    ("Pode sim, mas sem seguro", NEITHER),
    ("Sim, se o preço for menor", NEITHER),
    ("Só se for reembolsável", NEITHER),
    ("Não sei", NEITHER),
    ("nao sei", NEITHER),
    ("Talvez", NEITHER),
    ("Quanto custa?", NEITHER),
    ("Pode me passar o valor total", NEITHER),
    ("Já fiz isso", NEITHER),  # "já" is "already", not the German "ja"
    # Italian
    ("Sì", YES),
    ("Sì, procedi pure", YES),
    ("Va bene", YES),
    ("Certo, confermo", YES),
    ("D'accordo", YES),
    ("Sì, perfetto", YES),
    ("Nessun problema, procedi", YES),
    ("No, grazie", NO),
    ("Non ancora", NO),
    ("Aspetta", NO),
    ("Non farlo", NO),
    ("Sì, ma solo il volo di andata", NEITHER),
    ("Va bene, ma non il ritorno", NEITHER),
    ("Sì, se costa meno di 200 euro", NEITHER),
    ("Non lo so", NEITHER),
    ("Forse", NEITHER),
    # Dutch
    ("Ja hoor", YES),
    ("Prima, ga je gang", YES),
    ("Akkoord", YES),
    ("Dat klopt", YES),
    ("Ja graag", YES),
    ("Doe maar", YES),
    ("Geen probleem, ga je gang", YES),
    ("Nee", NO),
    ("nee hoor", NO),
    ("Nee, dank je", NO),
    ("Nog niet", NO),
    ("Wacht even", NO),
    ("Dat klopt niet", NO),
    ("Ja, maar alleen de heenvlucht", NEITHER),
    ("Ja, maar niet de terugvlucht", NEITHER),
    ("Ja, als het niet meer dan 200 euro kost", NEITHER),
    ("Misschien", NEITHER),
    ("Ik wil graag annuleren", NEITHER),
]


def test_the_table_is_large_and_covers_every_answer() -> None:
    assert len(PHRASES) >= 120
    assert len({text for text, _ in PHRASES}) == len(PHRASES)
    assert {expected for _, expected in PHRASES} == {YES, NO, NEITHER}


@pytest.mark.parametrize(("text", "expected"), PHRASES, ids=[f"{i:03d}" for i in range(len(PHRASES))])
def test_phrase(text: str, expected: tuple[bool, bool]) -> None:
    assert (affirmative(text), negative(text)) == expected


def test_never_both_true() -> None:
    words = ["yes", "no", "not", "go ahead", "but", "wait", "ok", "nein", "si", "?", ",", "don't", "👍", "pas"]
    texts = [f"{a} {b} {c}" for a in words for b in words for c in words]
    assert not [t for t in texts if affirmative(t) and negative(t)]


def test_accents_case_and_apostrophes_are_folded() -> None:
    assert affirmative("D\u2019ACCORD, ALLEZ-Y")
    assert affirmative("daccord")
    assert affirmative("Sí")
    assert affirmative("si\u0301")  # decomposed
    assert negative("I don\u2019t want that")
    assert negative("I dont want that")


def test_cached_and_long_texts_agree() -> None:
    long = "Yes, go ahead. " + "The flight details are as you listed them. " * 200
    assert len(long) > 4096
    assert affirmative(long)
    assert affirmative(long)  # not cached: read again
    assert not affirmative(long + " Wait.")


def test_non_string_input_raises_a_clear_error() -> None:
    for function in (affirmative, negative):
        with pytest.raises(TypeError, match=rf"{function.__name__}\(\): text must be a string, got int"):
            function(3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="got null"):
        affirmative(None)  # type: ignore[arg-type]


# ---- trajectories


def message(role: str, content: str) -> dict[str, Any]:
    return {"kind": "message", "tool": "", "args": {}, "result": None, "role": role, "content": content}


def call(tool: str, result: Any = None, **args: Any) -> dict[str, Any]:
    return {"kind": "tool_call", "tool": tool, "args": args, "result": result, "role": "assistant", "content": ""}


DETAILS = "I will book flight HAT207 on 2024-05-20 in economy for Ana Ruiz, total $200. Shall I proceed?"
STATED = [
    message("user", "I'd like to fly from Boston to Denver on May 20."),
    call("search_direct_flight", result=[{"flight_number": "HAT207"}], origin="BOS", destination="DEN"),
    message("assistant", DETAILS),
]


def test_last_user_message() -> None:
    trajectory = [*STATED, message("user", "Yes, go ahead."), call("book_reservation")]
    assert last_user_message(trajectory) == "Yes, go ahead."
    assert last_user_message([message("assistant", "Hello"), call("get_user")]) == ""
    assert last_user_message([]) == ""


def test_user_said_is_case_insensitive_and_reads_only_the_user() -> None:
    assert user_said(STATED, "boston to denver")
    assert not user_said(STATED, "hat207")  # only the assistant and a tool said it
    with pytest.raises(TypeError, match=r"user_said\(\): text must be a string, got list"):
        user_said(STATED, ["boston"])  # type: ignore[arg-type]


def test_confirmed_after_the_details() -> None:
    trajectory = [*STATED, message("user", "Yes, please book it.")]
    assert confirmed_after(trajectory, ["HAT207", "2024-05-20"])
    assert confirmed_after(trajectory, ["hat207", "ANA RUIZ"])  # case-insensitive
    assert confirmed_after(trajectory, [200.0, 2024])  # numbers as text: 200.0 is "200"
    assert confirmed_after(trajectory, [])  # the last assistant message
    assert not confirmed_after(trajectory, ["HAT999"])  # never stated


def test_a_yes_before_the_details_does_not_count() -> None:
    trajectory = [
        message("assistant", "Do you want me to look for flights?"),
        message("user", "Yes"),
        *STATED,
        call("book_reservation"),
    ]
    assert not confirmed_after(trajectory, ["HAT207"])


def test_details_stated_again_need_a_new_yes() -> None:
    trajectory = [*STATED, message("user", "Yes"), message("assistant", "Correction: HAT207 costs $240.")]
    assert confirmed_after(trajectory[:-1], ["HAT207"])
    assert not confirmed_after(trajectory, ["HAT207"])


@pytest.mark.parametrize(
    ("replies", "confirmed"),
    [
        (["yes"], True),
        (["yes", "wait, no"], False),
        (["Yes, go ahead", "Actually, make it the 21st"], False),
        (["Sure", "Is that refundable?"], False),
        (["No, hold on.", "Ok, yes, go ahead."], True),
        (["Yes please", "Thanks!"], True),
        (["yes, but not in economy"], False),
        (["Let me check with my partner"], False),
        ([], False),
    ],
)
def test_confirmed_after_reads_every_reply_after_the_details(replies: list[str], confirmed: bool) -> None:
    trajectory = STATED + [message("user", reply) for reply in replies]
    assert confirmed_after(trajectory, ["HAT207"]) is confirmed


def test_trajectory_helpers_refuse_other_shapes() -> None:
    with pytest.raises(TypeError, match=r"confirmed_after\(\): mentions must be a list, got string"):
        confirmed_after(STATED, "HAT207")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"last_user_message\(\): trajectory must be a list of steps, got string"):
        last_user_message("yes")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"trajectory\[1\] must be a map \(a step\), got string"):
        confirmed_after([STATED[0], "yes"], [])  # type: ignore[list-item]


# ---- from CEL


def cel_context(**variables: Any) -> cel.Context:
    """A context as engine.rule_context builds one: the variables and the gate's functions."""
    return cel.Context(variables, FUNCTIONS)


def test_every_function_is_given_to_the_context() -> None:
    context = cel_context()
    assert set(FUNCTION_NAMES) <= set(context.functions)
    assert set(FUNCTION_NAMES) == {"affirmative", "negative", "last_user_message", "user_said", "confirmed_after"}


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("affirmative('Yes, go ahead')", True),
        ("affirmative('oui, mais pas le retour')", False),
        ("negative('nein danke')", True),
        ("!negative('no worries')", True),
        ("affirmative(last_user_message(trajectory))", True),
        ("last_user_message(trajectory).affirmative()", True),
        ("size(last_user_message(trajectory)) > 0", True),
        ("confirmed_after(trajectory, [params.flight, params.amount])", True),
        ("confirmed_after(trajectory, [params.flight, 'economy']) && !negative(last_user_message(trajectory))", True),
        ("confirmed_after(trajectory, ['HAT999'])", False),
        ("user_said(trajectory, 'BOSTON')", True),
        ("trajectory.filter(s, s.role == 'user').exists(s, affirmative(s.content))", True),
    ],
)
def test_functions_from_cel(expression: str, expected: bool) -> None:
    context = cel_context(
        trajectory=[*STATED, message("user", "Yes, please book it.")],
        params={"flight": "HAT207", "amount": 200.0},
    )
    assert cel.compile(expression).execute(context) is expected


@pytest.mark.parametrize(
    ("expression", "error"),
    [
        ("affirmative(1)", "affirmative(): text must be a string, got int"),
        ("negative(params)", "negative(): text must be a string, got map"),
        ("affirmative(trajectory[0].result)", "affirmative(): text must be a string, got null"),
        ("confirmed_after(trajectory, 'HAT207')", "confirmed_after(): mentions must be a list, got string"),
        ("last_user_message(params)", "last_user_message(): trajectory must be a list of steps, got map"),
        ("confirmed_after(['yes'], [])", "confirmed_after(): trajectory[0] must be a map (a step), got string"),
    ],
)
def test_wrong_types_from_cel_are_errors_not_crashes(expression: str, error: str) -> None:
    context = cel_context(trajectory=STATED, params={"flight": "HAT207"})
    with pytest.raises(RuntimeError) as raised:
        cel.compile(expression).execute(context)
    assert error in str(raised.value)


def test_a_rule_using_the_functions_through_the_engine() -> None:
    """Every rule context has them: a confirmed action passes, an unconfirmed one is held and a
    wrong argument is a rule error (held), never a crash."""
    stated = [message("assistant", "I will refund $42.50 for order A-1001. OK?")]
    checked = policy(
        rules=[
            rule("user_confirmed", "confirmed_after(trajectory, [params.order_id, params.amount])"),
            rule("not_refused", "!negative(last_user_message(trajectory))"),
        ]
    )
    confirmed = engine.policy_evaluate(checked, proposal(trajectory=[*stated, message("user", "Yes, go ahead")]))
    assert confirmed.status == engine.AUTO_APPROVED
    refused = engine.policy_evaluate(checked, proposal(trajectory=[*stated, message("user", "No, wait")]))
    assert refused.status == engine.NEEDS_REVIEW
    assert {f["rule"]: f["outcome"] for f in refused.findings}["not_refused"] == "fail"
    broken = engine.policy_evaluate(policy(rules=[rule("bad", "affirmative(params.amount)")]), proposal())
    finding = {f["rule"]: f for f in broken.findings}["bad"]
    assert broken.status == engine.NEEDS_REVIEW
    assert finding["outcome"] == "error"
    assert "affirmative(): text must be a string, got double" in finding["error"]
