from glm.stream.stops import StopMatcher


def feed(stops, pieces):
    matcher = StopMatcher(stops)
    out = []
    for piece in pieces:
        text, stopped = matcher.push(piece)
        out.append(text)
        if stopped:
            return "".join(out), True
    return "".join(out) + matcher.flush(), False


def test_stop_inside_one_piece_truncates_before_it():
    assert feed(["END"], ["abcENDxyz"]) == ("abc", True)


def test_stop_split_over_pieces_is_never_sent():
    matcher = StopMatcher(["END"])
    assert matcher.push("abcE") == ("abc", False)
    assert matcher.push("N") == ("", False)
    assert matcher.push("Dzz") == ("", True)


def test_false_start_is_released():
    assert feed(["END"], ["abcEN", "x"]) == ("abcENx", False)


def test_held_text_is_flushed_at_the_end():
    assert feed(["END"], ["abcEN"]) == ("abcEN", False)


def test_earliest_of_several_stops_wins():
    assert feed(["yz", "c"], ["abcxyz"]) == ("ab", True)


def test_no_stops_passes_everything():
    assert feed([], ["a", "b"]) == ("ab", False)


def test_the_matcher_names_the_stop_that_ended_the_text():
    matcher = StopMatcher(["yz", "c"])
    assert matcher.matched is None
    matcher.push("abcxyz")
    assert matcher.matched == "c"
    assert StopMatcher(["END"]).matched is None
