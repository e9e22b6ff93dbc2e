/* test_json.c - the strict JSON parser: values, positions, every rejection class with its
 * line:col, truncated and corrupted inputs, the string writer, and the real tokenizer.json
 * files in ../shared checked against Python's json module. */
#include "testutil.h"

#include <math.h>

#include "json.h"
#include "util.h"

// --- helpers

/* Parses a copy of exactly len bytes with no NUL after them, so ASan catches any read past
 * the end, and frees the copy before the tree is used, so a tree that pointed into its input
 * would be caught too. */
static JsonDoc *parse_len(const char *text, size_t len, char *err) {
    char *copy = malloc(len ? len : 1);
    memcpy(copy, text, len);
    JsonDoc *doc = json_parse(copy, len, "t.json", err, ERR_LEN);
    free(copy);
    return doc;
}

#define PARSE(lit) parse_len((lit), sizeof(lit) - 1, err)

/* The root of a literal that must parse; the doc is kept in *doc for json_free. */
static const Json *parse_ok(const char *text, size_t len, JsonDoc **doc) {
    char err[ERR_LEN] = "";
    *doc = parse_len(text, len, err);
    if (!*doc) fail_msg("should parse: %s", err);
    return json_root(*doc);
}

#define OK(lit, docp) parse_ok((lit), sizeof(lit) - 1, (docp))

/* The input must fail with a message that starts with want ("t.json:LINE:COL: what"). */
static void check_error(const char *text, size_t len, const char *want) {
    char err[ERR_LEN] = "";
    JsonDoc *doc = parse_len(text, len, err);
    if (doc) {
        json_free(doc);
        fail_msg("should fail with \"%s\" but parsed: %.*s", want, (int)len, text);
    }
    if (strncmp(err, want, strlen(want)) != 0)
        fail_msg("input: %.*s\n  want: %s...\n  got:  %s", (int)len, text, want, err);
}

#define ERR(lit, want) check_error((lit), sizeof(lit) - 1, (want))

/* An error message has the shape "t.json:LINE:COL: something". */
static void assert_error_shape(const char *err) {
    int line = 0, col = 0, used = 0;
    if (sscanf(err, "t.json:%d:%d: %n", &line, &col, &used) != 2 || used == 0 || line < 1 ||
        col < 1 || err[used] == 0)
        fail_msg("malformed error message: \"%s\"", err);
}

// --- values

static void test_scalars(void **state) {
    (void)state;
    JsonDoc *doc;
    const Json *v = OK("null", &doc);
    assert_int_equal(v->type, JSON_NULL);
    json_free(doc);

    bool b = false;
    v = OK(" true ", &doc);
    assert_true(json_as_bool(v, &b) && b);
    assert_int_equal(v->col, 2);
    json_free(doc);
    v = OK("false", &doc);
    assert_true(json_as_bool(v, &b) && !b);
    json_free(doc);

    int64_t i;
    double f;
    v = OK("-42", &doc);
    assert_true(json_as_int(v, &i));
    assert_int_equal(i, -42);
    assert_true(json_as_double(v, &f) && f == -42.0);
    json_free(doc);
    v = OK("-2.5e-3", &doc);
    assert_false(json_as_int(v, &i));
    assert_true(json_as_double(v, &f) && f == -2.5e-3);
    json_free(doc);
    v = OK("1E+2", &doc);
    assert_false(v->num.is_int);
    assert_true(v->num.f == 100.0);
    json_free(doc);
    v = OK("0.1", &doc);
    assert_true(v->num.f == 0.1);
    json_free(doc);

    v = OK("\"h\xC3\xA9llo\"", &doc);
    assert_int_equal(v->type, JSON_STRING);
    assert_string_equal(json_as_str(v), "h\xC3\xA9llo");
    assert_int_equal(v->str.len, 6);
    json_free(doc);
}

static void test_whitespace_and_positions(void **state) {
    (void)state;
    JsonDoc *doc;
    const Json *v = OK(" \t\r\n\n   [1,\n  {\"k\":\r\n\t\"v\"}]  \n", &doc);
    assert_int_equal(v->line, 3);
    assert_int_equal(v->col, 4);
    assert_int_equal(json_at(v, 0)->line, 3);
    assert_int_equal(json_at(v, 0)->col, 5);
    const Json *o = json_at(v, 1);
    assert_int_equal(o->line, 4);
    assert_int_equal(o->col, 3);
    const Json *s = json_get(o, "k");
    assert_int_equal(s->line, 5);
    assert_int_equal(s->col, 2);
    json_free(doc);

    // JSONL: a record's lines are counted from its line in the file
    char err[ERR_LEN];
    doc = json_parse_at("{\"a\":\n 1}", 9, "d.jsonl", 7, err, sizeof err);
    assert_non_null(doc);
    assert_int_equal(json_get(json_root(doc), "a")->line, 8);
    json_free(doc);
    assert_null(json_parse_at("{\"a\":}", 6, "d.jsonl", 7, err, sizeof err));
    assert_string_equal(err, "d.jsonl:7:6: expected a JSON value, found '}'");
}

static void test_nested(void **state) {
    (void)state;
    JsonDoc *doc;
    const Json *r = OK("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1},"
                       " \"merges\": [[\"a\", \"b\"], []], \"dropout\": null},"
                       " \"list\": [1, [2, [3, {}]], true], \"empty\": {}}",
                       &doc);
    assert_int_equal(r->type, JSON_OBJECT);
    assert_int_equal(r->obj.n, 3);
    assert_string_equal(r->obj.keys[0], "model");
    assert_string_equal(r->obj.keys[1], "list");
    assert_string_equal(r->obj.keys[2], "empty");
    const Json *m = json_get(r, "model");
    assert_string_equal(json_as_str(json_get(m, "type")), "BPE");
    const Json *vocab = json_get(m, "vocab");
    assert_int_equal(vocab->obj.n, 2);
    int64_t i;
    assert_true(json_as_int(json_get(vocab, "b"), &i) && i == 1);
    const Json *merges = json_get(m, "merges");
    assert_int_equal(merges->arr.n, 2);
    assert_string_equal(json_as_str(json_at(json_at(merges, 0), 1)), "b");
    assert_int_equal(json_at(merges, 1)->arr.n, 0);
    assert_int_equal(json_get(m, "dropout")->type, JSON_NULL);
    const Json *list = json_get(r, "list");
    const Json *deep = json_at(json_at(json_at(list, 1), 1), 1);
    assert_int_equal(deep->type, JSON_OBJECT);
    assert_int_equal(deep->obj.n, 0);
    assert_int_equal(json_get(r, "empty")->obj.n, 0);
    json_free(doc);
}

static void test_duplicate_keys_last_wins(void **state) {
    (void)state;
    JsonDoc *doc;
    const Json *r = OK("{\"a\": 1, \"b\": 2, \"a\": 3}", &doc);
    assert_int_equal(r->obj.n, 3); // every member is kept, in file order
    int64_t i;
    assert_true(json_as_int(json_get(r, "a"), &i));
    assert_int_equal(i, 3);
    assert_int_equal(json_get(r, "a")->col, 23);
    json_free(doc);
}

static void test_accessors_reject_wrong_types(void **state) {
    (void)state;
    JsonDoc *doc;
    const Json *r = OK("{\"n\": 2.0, \"s\": \"x\", \"a\": [1], \"ab\": 5}", &doc);
    int64_t i;
    double f;
    bool b;
    assert_false(json_as_int(json_get(r, "n"), &i)); // 2.0 is a double, not an int
    assert_true(json_as_double(json_get(r, "n"), &f) && f == 2.0);
    assert_false(json_as_int(json_get(r, "s"), &i));
    assert_false(json_as_bool(json_get(r, "s"), &b));
    assert_false(json_as_double(NULL, &f));
    assert_null(json_as_str(json_get(r, "n")));
    assert_null(json_get(r, "missing"));
    assert_ptr_equal(json_get(r, "a\0b"), json_get(r, "a")); // a C string key ends at its NUL
    assert_non_null(json_get(r, "ab"));
    assert_null(json_get(json_get(r, "a"), "x")); // not an object
    assert_null(json_at(r, 0));                   // not an array
    assert_null(json_at(json_get(r, "a"), 1));    // out of range
    assert_null(json_get(NULL, "a"));
    assert_null(json_at(NULL, 0));
    assert_string_equal(json_type_name(JSON_NULL), "null");
    assert_string_equal(json_type_name(JSON_BOOL), "boolean");
    assert_string_equal(json_type_name(JSON_NUMBER), "number");
    assert_string_equal(json_type_name(JSON_STRING), "string");
    assert_string_equal(json_type_name(JSON_ARRAY), "array");
    assert_string_equal(json_type_name(JSON_OBJECT), "object");
    json_free(doc);
    json_free(NULL);
}

// --- strings

static void test_string_escapes(void **state) {
    (void)state;
    JsonDoc *doc;
    const Json *v = OK("\"q\\\" b\\\\ s\\/ \\b\\f\\n\\r\\t\"", &doc);
    assert_string_equal(v->str.s, "q\" b\\ s/ \b\f\n\r\t");
    json_free(doc);

    // \u escapes become UTF-8; hex digits in either case
    v = OK("\"\\u0041\\u00e9\\u20AC\\uFFFF\"", &doc);
    assert_string_equal(v->str.s, "A\xC3\xA9\xE2\x82\xAC\xEF\xBF\xBF");
    json_free(doc);

    // a surrogate pair is one code point: U+1F600 and U+10FFFF
    v = OK("\"\\uD83D\\uDE00|\\udbff\\udfff\"", &doc);
    assert_int_equal(v->str.len, 9);
    assert_memory_equal(v->str.s, "\xF0\x9F\x98\x80|\xF4\x8F\xBF\xBF", 10);
    json_free(doc);

    // \u0000 is a real byte inside the string: len counts it, the NUL terminator follows
    v = OK("\"a\\u0000b\"", &doc);
    assert_int_equal(v->str.len, 3);
    assert_memory_equal(v->str.s, "a\0b", 4);
    json_free(doc);
    v = OK("{\"k\\u0000ey\": 1, \"k\": 2}", &doc);
    assert_int_equal(v->obj.key_lens[0], 4);
    assert_memory_equal(v->obj.keys[0], "k\0ey", 5);
    int64_t i;
    assert_true(json_as_int(json_get(v, "k"), &i) && i == 2);
    json_free(doc);

    v = OK("\"\"", &doc);
    assert_int_equal(v->str.len, 0);
    assert_string_equal(v->str.s, "");
    json_free(doc);
}

/* Raw UTF-8 at the edges of each sequence length is kept byte for byte. */
static void test_raw_utf8(void **state) {
    (void)state;
    JsonDoc *doc;
    const char *s = "\xC2\x80 \xDF\xBF \xE0\xA0\x80 \xED\x9F\xBF \xEE\x80\x80 \xEF\xBF\xBF "
                    "\xF0\x90\x80\x80 \xF4\x8F\xBF\xBF \x7F";
    const Json *v = OK("\"\xC2\x80 \xDF\xBF \xE0\xA0\x80 \xED\x9F\xBF \xEE\x80\x80 \xEF\xBF\xBF "
                       "\xF0\x90\x80\x80 \xF4\x8F\xBF\xBF \x7F\"",
                       &doc);
    assert_string_equal(v->str.s, s);
    json_free(doc);
}

// --- numbers

static void test_int64_edges(void **state) {
    (void)state;
    JsonDoc *doc;
    const Json *v = OK("9223372036854775807", &doc);
    assert_true(v->num.is_int);
    assert_true(v->num.i == INT64_MAX);
    assert_true(v->num.f == 9223372036854775808.0);
    json_free(doc);

    v = OK("9223372036854775808", &doc); // INT64_MAX + 1: only a double
    assert_false(v->num.is_int);
    assert_true(v->num.f == 9223372036854775808.0);
    json_free(doc);

    v = OK("-9223372036854775808", &doc);
    assert_true(v->num.is_int);
    assert_true(v->num.i == INT64_MIN);
    json_free(doc);

    v = OK("-9223372036854775809", &doc);
    assert_false(v->num.is_int);
    assert_true(v->num.f == -9223372036854775808.0);
    json_free(doc);

    v = OK("123456789012345678901234567890", &doc); // float('123456789012345678901234567890')
    assert_false(v->num.is_int);
    assert_true(v->num.f == 1.2345678901234568e+29);
    json_free(doc);

    v = OK("-0", &doc);
    assert_true(v->num.is_int && v->num.i == 0);
    assert_true(v->num.f == 0.0 && signbit(v->num.f));
    json_free(doc);

    v = OK("[1.7976931348623157e308, 4.9e-324, 1e-400, 0e0, 0.000001]", &doc);
    assert_true(json_at(v, 0)->num.f == 1.7976931348623157e308);
    assert_true(json_at(v, 1)->num.f == 4.9e-324);
    assert_true(json_at(v, 2)->num.f == 0.0); // underflow is 0, as in Python
    assert_true(json_at(v, 3)->num.f == 0.0 && !json_at(v, 3)->num.is_int);
    assert_true(json_at(v, 4)->num.f == 1e-6);
    json_free(doc);
}

// --- rejections, each with its line:col

static void test_reject_empty(void **state) {
    (void)state;
    ERR("", "t.json:1:1: empty document");
    ERR(" \n\t", "t.json:2:2: empty document");
    ERR("\xEF\xBB\xBF{}", "t.json:1:1: byte order mark");
    char err[ERR_LEN];
    assert_null(json_parse(NULL, 0, "t.json", err, sizeof err));
    assert_string_equal(err, "t.json:1:1: empty document; expected a JSON value");
    assert_null(json_parse("", 0, NULL, NULL, 0)); // no name, no err buffer: still no crash
}

static void test_reject_syntax(void **state) {
    (void)state;
    ERR("[1,2,]", "t.json:1:5: trailing comma before ']'");
    ERR("{\"a\": 1,\n}", "t.json:1:8: trailing comma before '}'");
    ERR("[1 2]", "t.json:1:4: expected ',' or ']' after array item, found '2'");
    ERR("{\n  \"a\": 1,\n  \"b\": 2\n  \"c\": 3\n}",
        "t.json:4:3: expected ',' or '}' after object member, found '\"'");
    ERR("{\"a\" 1}", "t.json:1:6: expected ':' after object key, found '1'");
    ERR("{1: 2}", "t.json:1:2: expected a string key, found '1'");
    ERR("{'a': 2}", "t.json:1:2: expected a string key, found '''; JSON strings use double quotes");
    ERR("{,}", "t.json:1:2: expected a string key, found ','");
    ERR("[,1]", "t.json:1:2: expected a JSON value, found ','");
    ERR("]", "t.json:1:1: expected a JSON value, found ']'");
    ERR("[1,\x00]", "t.json:1:4: expected a JSON value, found byte 0x00");
    ERR("\xC3\xA9", "t.json:1:1: expected a JSON value, found byte 0xC3");
    ERR("tru", "t.json:1:1: invalid literal; expected 'true'");
    ERR("[nul]", "t.json:1:2: invalid literal; expected 'null'");
    ERR("[fals", "t.json:1:2: invalid literal; expected 'false'");
    ERR("True",
        "t.json:1:1: expected a JSON value, found 'T'; JSON's literals are true, false and null");
}

static void test_reject_comments(void **state) {
    (void)state;
    ERR("[1, // one\n2]", "t.json:1:5: expected a JSON value, found '/'; comments are not allowed");
    ERR("/* c */ {}", "t.json:1:1: expected a JSON value, found '/'; comments are not allowed");
    ERR("{\"a\": 1 /* c */}",
        "t.json:1:9: expected ',' or '}' after object member, found '/'; comments are not allowed");
    ERR("{}\n# c", "t.json:2:1: expected end of input after the JSON value, found '#'");
}

static void test_reject_trailing_garbage(void **state) {
    (void)state;
    ERR("1 2", "t.json:1:3: expected end of input after the JSON value, found '2'");
    ERR("[1]]", "t.json:1:4: expected end of input after the JSON value, found ']'");
    ERR("{}\n\n  x", "t.json:3:3: expected end of input after the JSON value, found 'x'");
    ERR("truex", "t.json:1:5: expected end of input after the JSON value, found 'x'");
    ERR("\"a\"\"b\"", "t.json:1:4: expected end of input after the JSON value, found '\"'");
}

static void test_reject_bad_numbers(void **state) {
    (void)state;
    ERR("NaN", "t.json:1:1: expected a JSON value, found 'N'; NaN and Infinity are not valid JSON");
    ERR("[Infinity]", "t.json:1:2: expected a JSON value, found 'I'; NaN and Infinity are not");
    ERR("[-Infinity]", "t.json:1:3: expected a digit after '-', found 'I'; NaN and Infinity");
    ERR("01", "t.json:1:1: leading zeros are not allowed in numbers");
    ERR("[\n -012]", "t.json:2:2: leading zeros are not allowed in numbers");
    ERR("00", "t.json:1:1: leading zeros are not allowed");
    ERR("-", "t.json:1:2: expected a digit after '-', found end of input");
    ERR("+1", "t.json:1:1: expected a JSON value, found '+'");
    ERR(".5", "t.json:1:1: expected a JSON value, found '.'");
    ERR("1.", "t.json:1:3: expected a digit after '.', found end of input");
    ERR("[1.e5]", "t.json:1:4: expected a digit after '.', found 'e'");
    ERR("1e", "t.json:1:3: expected a digit in the exponent, found end of input");
    ERR("[1E+]", "t.json:1:5: expected a digit in the exponent, found ']'");
    ERR("0x10", "t.json:1:2: expected end of input after the JSON value, found 'x'");
    ERR("1e400", "t.json:1:1: number out of range");
    ERR("{\"lr\":\n  -1.8e308}", "t.json:2:3: number out of range");
}

static void test_reject_bad_strings(void **state) {
    (void)state;
    ERR("\"abc", "t.json:1:1: unterminated string");
    ERR("[\"abc\\\"]", "t.json:1:2: unterminated string");
    ERR("\"abc\\", "t.json:1:1: unterminated string");
    ERR("\"a\tb\"", "t.json:1:3: unescaped control character U+0009 in string");
    ERR("[\n\"ab\ncd\"]",
        "t.json:2:4: unescaped control character U+000A in string; missing closing");
    ERR("\"\x1F\"", "t.json:1:2: unescaped control character U+001F in string");
    ERR("\"a\x00\"", "t.json:1:3: unescaped control character U+0000 in string");
    ERR("\"\\x41\"", "t.json:1:2: invalid escape in string: '\\' followed by 'x'");
    ERR("\"\\'\"", "t.json:1:2: invalid escape in string: '\\' followed by '''");
    ERR("\"\\\n\"", "t.json:1:2: invalid escape in string: '\\' followed by byte 0x0A");
    ERR("\"ab\\u12G4\"", "t.json:1:4: invalid \\u escape; expected 4 hex digits");
    ERR("\"\\u12\"", "t.json:1:2: invalid \\u escape; expected 4 hex digits");
    ERR("\"\\u", "t.json:1:2: invalid \\u escape");
}

static void test_reject_lone_surrogates(void **state) {
    (void)state;
    ERR("\"\\uD800\"", "t.json:1:2: lone surrogate \\uD800 in string");
    ERR("\"x\\udc00\"", "t.json:1:3: lone surrogate \\uDC00 in string");
    ERR("\"\\uD83D\\u0041\"", "t.json:1:2: lone surrogate \\uD83D in string");
    ERR("\"\\uD83D\\uD83D\"", "t.json:1:2: lone surrogate \\uD83D in string");
    ERR("\"\\uD83Dx\"", "t.json:1:2: lone surrogate \\uD83D in string");
    ERR("\"\\uD83D", "t.json:1:2: lone surrogate \\uD83D in string");
    ERR("{\"k\": \"\\uDE00\\uD83D\"}", "t.json:1:8: lone surrogate \\uDE00 in string");
}

static void test_reject_bad_utf8(void **state) {
    (void)state;
    ERR("\"ab\xC0\x80\"", "t.json:1:4: invalid UTF-8 in string (byte 0xC0)"); // overlong NUL
    ERR("\"\xC1\xBF\"", "t.json:1:2: invalid UTF-8 in string (byte 0xC1)");       // overlong
    ERR("\"\xE0\x80\x80\"", "t.json:1:2: invalid UTF-8 in string (byte 0xE0)");   // overlong
    ERR("\"\xE0\x9F\xBF\"", "t.json:1:2: invalid UTF-8 in string (byte 0xE0)");   // overlong
    ERR("\"\xF0\x80\x80\x80\"", "t.json:1:2: invalid UTF-8 in string (byte 0xF0)"); // overlong
    ERR("\"\xF0\x8F\xBF\xBF\"", "t.json:1:2: invalid UTF-8 in string (byte 0xF0)"); // overlong
    ERR("\"\xED\xA0\x80\"", "t.json:1:2: invalid UTF-8 in string (byte 0xED)");   // U+D800
    ERR("\"\xED\xBF\xBF\"", "t.json:1:2: invalid UTF-8 in string (byte 0xED)");   // U+DFFF
    ERR("\"\xF4\x90\x80\x80\"", "t.json:1:2: invalid UTF-8 in string (byte 0xF4)"); // U+110000
    ERR("\"\xF5\x80\x80\x80\"", "t.json:1:2: invalid UTF-8 in string (byte 0xF5)");
    ERR("\"\xFF\"", "t.json:1:2: invalid UTF-8 in string (byte 0xFF)");
    ERR("\"a\x80\"", "t.json:1:3: invalid UTF-8 in string (byte 0x80)"); // lone continuation
    ERR("\"\xC3\"", "t.json:1:2: invalid UTF-8 in string (byte 0xC3)");  // cut by the quote
    ERR("\"\xE2\x82\"", "t.json:1:2: invalid UTF-8 in string (byte 0xE2)");
    ERR("\"\xF0\x9F\x98", "t.json:1:2: invalid UTF-8 in string (byte 0xF0)"); // cut by the end
    ERR("\"\xE2\x82x\"", "t.json:1:2: invalid UTF-8 in string (byte 0xE2)");
    ERR("{\"k\xFE\": 1}", "t.json:1:4: invalid UTF-8 in string (byte 0xFE)"); // in a key
}

// --- nesting limit

static char *nested(int depth, const char *open, const char *close, size_t *len) {
    size_t no = strlen(open), nc = strlen(close);
    *len = (size_t)depth * (no + nc);
    char *s = malloc(*len + 1);
    for (int i = 0; i < depth; i++) memcpy(s + i * no, open, no);
    for (int i = 0; i < depth; i++) memcpy(s + depth * no + i * nc, close, nc);
    s[*len] = 0;
    return s;
}

static void test_depth_limit(void **state) {
    (void)state;
    char err[ERR_LEN];
    size_t len;
    char *s = nested(JSON_MAX_DEPTH, "[", "]", &len);
    JsonDoc *doc = parse_len(s, len, err);
    assert_non_null(doc);
    const Json *v = json_root(doc);
    for (int d = 1; d < JSON_MAX_DEPTH; d++) v = json_at(v, 0);
    assert_int_equal(v->type, JSON_ARRAY);
    assert_int_equal(v->arr.n, 0);
    json_free(doc);
    free(s);

    s = nested(JSON_MAX_DEPTH + 1, "[", "]", &len);
    check_error(s, len, "t.json:1:513: nesting deeper than 512 levels");
    free(s);

    s = nested(JSON_MAX_DEPTH + 1, "{\"a\":", "}", &len);
    check_error(s, len, "t.json:1:2561: nesting deeper than 512 levels"); // 5 * 512 + 1
    free(s);

    // a million opening brackets stop at the limit, long before the C stack is at risk
    len = 1000000;
    s = malloc(len);
    memset(s, '[', len);
    check_error(s, len, "t.json:1:513: nesting deeper than 512 levels");
    free(s);
}

// --- truncated and corrupted input

static const char sample[] =
    "{\n"
    "  \"name\": \"llfc caf\\u00e9 \\ud83d\\ude00\",\n"
    "  \"utf8\": \"\xE6\x97\xA5\xE6\x9C\xAC \xF0\x9F\x98\x80 \xC3\xA9\",\n"
    "  \"esc\": \"t\\tn\\n\\\"q\\\" \\\\ \\/ \\b\\f\\r \\u0000end\",\n"
    "  \"ints\": [0, -1, 9223372036854775807, -9223372036854775808, 12345678901234567890],\n"
    "  \"reals\": [1.5, -0.25e-3, 6.02E+23, 1e-7],\n"
    "  \"lits\": [true, false, null],\n"
    "  \"nested\": {\"a\": [{\"b\": [[]]}, {}], \"c\": {\"d\": \"e\"}},\n"
    "  \"a\": 1, \"a\": 2, \"\": \"\"\n"
    "}\n";

/* Every prefix of a valid document parses (only the whole thing, with or without its final
 * newline) or fails with a well-formed message; ASan sees any read past the prefix. */
static void test_every_prefix(void **state) {
    (void)state;
    size_t n = sizeof sample - 1;
    assert_true(n >= 300);
    for (size_t k = 0; k <= n; k++) {
        char err[ERR_LEN] = "";
        JsonDoc *doc = parse_len(sample, k, err);
        if (k >= n - 1) {
            if (!doc) fail_msg("full document failed: %s", err);
            int64_t i;
            assert_true(json_as_int(json_get(json_root(doc), "a"), &i) && i == 2);
            assert_int_equal(json_get(json_root(doc), "esc")->str.len, 20);
        } else {
            if (doc) fail_msg("prefix of %zu bytes parsed", k);
            assert_error_shape(err);
        }
        json_free(doc);
    }
}

/* Each byte replaced by each troublemaker: parse or fail cleanly, never crash. */
static void test_every_byte_corrupted(void **state) {
    (void)state;
    static const char bad[] = {'\0', '"', '\\', '\n', '[', '{', '}', ',', ':', '0', '-',
                               'e', 'u', '\x80', '\xC3', '\xED', '\xF4', '\xFF'};
    size_t n = sizeof sample - 1;
    char *copy = malloc(n);
    for (size_t k = 0; k < n; k++) {
        for (size_t b = 0; b < sizeof bad; b++) {
            memcpy(copy, sample, n);
            copy[k] = bad[b];
            char err[ERR_LEN] = "";
            JsonDoc *doc = parse_len(copy, n, err);
            if (!doc) assert_error_shape(err);
            json_free(doc);
        }
    }
    free(copy);
}

// --- json_write_string

static char *write_to_string(const char *s, size_t len, size_t *outlen) {
    char *buf = NULL;
    FILE *f = open_memstream(&buf, outlen);
    assert_non_null(f);
    json_write_string(f, s, len);
    fclose(f);
    return buf;
}

static void test_write_string_escapes(void **state) {
    (void)state;
    size_t n;
    static const char in[] = "a\"b\\c/\n\t\r\b\f\x01\x1F\x7F\xC3\xA9\0z";
    char *out = write_to_string(in, sizeof in - 1, &n);
    assert_string_equal(out, "\"a\\\"b\\\\c/\\n\\t\\r\\b\\f\\u0001\\u001F\x7F\xC3\xA9\\u0000z\"");
    free(out);
    // bytes that are not UTF-8 become U+FFFD, so the output is always valid JSON
    out = write_to_string("x\xFFy\xC3", 4, &n);
    assert_string_equal(out, "\"x\xEF\xBF\xBDy\xEF\xBF\xBD\"");
    free(out);
    out = write_to_string("", 0, &n);
    assert_string_equal(out, "\"\"");
    free(out);
}

/* json_write_string then json_parse gives back the same bytes, for every ASCII byte and
 * UTF-8 of every length. */
static void test_write_string_round_trip(void **state) {
    (void)state;
    char s[128 + 32];
    size_t len = 0;
    for (int c = 0; c < 128; c++) s[len++] = (char)c;
    const char *utf8 = "\xC2\x80\xDF\xBF\xE0\xA0\x80\xEF\xBF\xBF\xF0\x90\x80\x80\xF4\x8F\xBF\xBF";
    memcpy(s + len, utf8, strlen(utf8));
    len += strlen(utf8);
    size_t n;
    char *out = write_to_string(s, len, &n);
    char err[ERR_LEN];
    JsonDoc *doc = parse_len(out, n, err);
    if (!doc) fail_msg("%s", err);
    const Json *v = json_root(doc);
    assert_int_equal(v->type, JSON_STRING);
    assert_int_equal(v->str.len, len);
    assert_memory_equal(v->str.s, s, len);
    json_free(doc);
    free(out);
}

// --- real tokenizer.json files against Python's json module

/* Python's json (json.load(f, object_pairs_hook=...) so repeated keys count) walked in file
 * order, keys before their values:
 *   objects, arrays, strings (values), keys, nulls, booleans, trues, ints, floats,
 *   UTF-8 bytes of all keys and strings, sum of ints mod 2^64,
 *   FNV-1a 64 of every key and string in order, each followed by a 0xFF byte,
 *   len(model.vocab), the last vocab key and its id.
 * Generated with this, run in ../shared/tokenizers:
 *   class Obj(list): pass
 *   def walk(v):  # Obj -> obj, keys; list -> arr; str -> str; None/bool/int/float -> counts
 *       ...       # fnv(h, s.encode('utf-8') + b'\xff') for each key and string
 *   d = json.load(open(p, encoding='utf-8'), object_pairs_hook=Obj)
 */
typedef struct {
    const char *name;
    size_t objs, arrs, strs, keys, nulls, bools, trues, ints, floats, bytes;
    uint64_t int_sum, fnv;
    size_t vocab;
    const char *last_key;
    int64_t last_id;
} TokFacts;

static const TokFacts tok_facts[] = {
    {"deepseek_v3", 832, 4, 128575, 133775, 6, 4104, 825, 128818, 0, 2694382,
     0x00000001ee83e1bcull, 0x2c95f20df8b2fbe6ull, 128000,
     "\xc3\xa5\xc2\xb1\xc4\xad\xc3\xa6\xc2\xaa\xc4\xb2", 127999},
    {"gemma3", 6442, 514913, 1036251, 307111, 5, 32079, 11, 268566, 0, 7325625,
     0x000000085f5f601full, 0x7d4207e7027eabcfull, 262144, "<unused6241>", 262143},
    {"llama2", 31, 8, 61278, 32085, 6, 17, 8, 32012, 0, 694823, 0x000000001e844187ull,
     0x897f9585e50dbb87ull, 32000, "\xe7\xbb\x99", 31999},
    {"llama3", 265, 3, 280412, 129830, 7, 1293, 263, 128256, 0, 4050110, 0x00000001ea3b8580ull,
     0xef8a4d1d1daf71aaull, 128000, "\xc3\xa9\xc4\xb6\xc2\xa6", 127999},
    {"llama3_1", 281, 8, 280422, 129858, 7, 1293, 263, 128263, 0, 4050408,
     0x00000001ea3d7982ull, 0xf9c41d58ecd52c95ull, 128000, "\xc3\xa9\xc4\xb6\xc2\xa6", 127999},
    {"mistral", 31, 8, 59009, 32085, 6, 17, 5, 32012, 0, 669831, 0x000000001e844187ull,
     0x3e6437357ea968f4ull, 32000, "\xe6\xa2\xa6", 31999},
    {"phi-3-mini", 35, 6, 61284, 32149, 6, 72, 26, 32019, 0, 695417, 0x000000001e89a0bcull,
     0x128de58fc83a50adull, 32000, "\xe7\xbb\x99", 31999},
    {"qwen3", 36, 151390, 302812, 151864, 4, 143, 14, 151669, 0, 2740696, 0x00000002ad8d8282ull,
     0x088bee63a5129d72ull, 151643, "\xc3\xa2\xc2\xbd\xc4\xb9", 151642},
};

typedef struct {
    size_t objs, arrs, strs, keys, nulls, bools, trues, ints, floats, bytes;
    uint64_t int_sum, fnv;
} TreeStats;

static void fnv_bytes(TreeStats *st, const char *s, size_t n) {
    for (size_t i = 0; i < n; i++) st->fnv = (st->fnv ^ (unsigned char)s[i]) * 0x100000001b3ull;
    st->fnv = (st->fnv ^ 0xFF) * 0x100000001b3ull;
    st->bytes += n;
}

static void walk(const Json *v, TreeStats *st) {
    switch (v->type) {
    case JSON_NULL: st->nulls++; break;
    case JSON_BOOL:
        st->bools++;
        st->trues += v->boolean;
        break;
    case JSON_NUMBER:
        if (!v->num.is_int) {
            st->floats++;
            break;
        }
        st->ints++;
        st->int_sum += (uint64_t)v->num.i;
        break;
    case JSON_STRING:
        st->strs++;
        fnv_bytes(st, v->str.s, v->str.len);
        break;
    case JSON_ARRAY:
        st->arrs++;
        for (size_t i = 0; i < v->arr.n; i++) walk(v->arr.items[i], st);
        break;
    case JSON_OBJECT:
        st->objs++;
        for (size_t i = 0; i < v->obj.n; i++) {
            st->keys++;
            fnv_bytes(st, v->obj.keys[i], v->obj.key_lens[i]);
            walk(v->obj.vals[i], st);
        }
        break;
    }
}

static void check_tokenizer(const TokFacts *t, const char *path) {
    JsonDoc *doc = test_load_json(path);
    TreeStats st = {.fnv = 0xcbf29ce484222325ull};
    walk(json_root(doc), &st);
    print_message("  %s: %zu strings, %zu keys\n", t->name, st.strs, st.keys);
    assert_int_equal(st.objs, t->objs);
    assert_int_equal(st.arrs, t->arrs);
    assert_int_equal(st.strs, t->strs);
    assert_int_equal(st.keys, t->keys);
    assert_int_equal(st.nulls, t->nulls);
    assert_int_equal(st.bools, t->bools);
    assert_int_equal(st.trues, t->trues);
    assert_int_equal(st.ints, t->ints);
    assert_int_equal(st.floats, t->floats);
    assert_int_equal(st.bytes, t->bytes);
    assert_int_equal(st.int_sum, t->int_sum);
    assert_int_equal(st.fnv, t->fnv);

    const Json *model = json_get(json_root(doc), "model");
    assert_string_equal(json_as_str(json_get(model, "type")), "BPE");
    const Json *vocab = json_get(model, "vocab");
    assert_non_null(vocab);
    assert_int_equal(vocab->type, JSON_OBJECT);
    assert_int_equal(vocab->obj.n, t->vocab);
    assert_string_equal(vocab->obj.keys[vocab->obj.n - 1], t->last_key);
    int64_t id;
    assert_true(json_as_int(json_get(vocab, t->last_key), &id));
    assert_int_equal(id, t->last_id);
    json_free(doc);
}

static void test_shared_tokenizers(void **state) {
    (void)state;
    SHARED_OR_SKIP(dir, "tokenizers");
    for (size_t i = 0; i < sizeof tok_facts / sizeof tok_facts[0]; i++) {
        char rel[256];
        snprintf(rel, sizeof rel, "tokenizers/%s/tokenizer.json", tok_facts[i].name);
        char *path = test_shared_path(rel);
        if (!path) fail_msg("missing shared asset %s", rel);
        check_tokenizer(&tok_facts[i], path);
        free(path);
    }
    free(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_scalars),
        cmocka_unit_test(test_whitespace_and_positions),
        cmocka_unit_test(test_nested),
        cmocka_unit_test(test_duplicate_keys_last_wins),
        cmocka_unit_test(test_accessors_reject_wrong_types),
        cmocka_unit_test(test_string_escapes),
        cmocka_unit_test(test_raw_utf8),
        cmocka_unit_test(test_int64_edges),
        cmocka_unit_test(test_reject_empty),
        cmocka_unit_test(test_reject_syntax),
        cmocka_unit_test(test_reject_comments),
        cmocka_unit_test(test_reject_trailing_garbage),
        cmocka_unit_test(test_reject_bad_numbers),
        cmocka_unit_test(test_reject_bad_strings),
        cmocka_unit_test(test_reject_lone_surrogates),
        cmocka_unit_test(test_reject_bad_utf8),
        cmocka_unit_test(test_depth_limit),
        cmocka_unit_test(test_every_prefix),
        cmocka_unit_test(test_every_byte_corrupted),
        cmocka_unit_test(test_write_string_escapes),
        cmocka_unit_test(test_write_string_round_trip),
        cmocka_unit_test(test_shared_tokenizers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
