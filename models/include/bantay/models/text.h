// Text from untrusted input (hash-list lines, query parameters, JSON keys)
// that ends up in messages: JSON answers, report lines, operators'
// terminals.
//
// Thread safety: free functions without shared state.
#ifndef BANTAY_MODELS_TEXT_H_
#define BANTAY_MODELS_TEXT_H_

#include <cstddef>
#include <string>
#include <string_view>

namespace bantay::models {

// Strict UTF-8 (RFC 3629): no overlong forms, surrogates or code points
// above U+10FFFF.
bool IsValidUtf8(std::string_view text);

// The length of the valid UTF-8 sequence at text[i] (i < text.size()), or 0
// when the bytes there are not one.
size_t Utf8SequenceLength(std::string_view text, size_t i);

// JSON text must be UTF-8; file names need not be: each byte that is not
// part of a valid sequence becomes U+FFFD.
std::string Utf8Lossy(std::string_view text);

// `text` as printable UTF-8 to quote in a message: valid UTF-8 is kept as
// it is, but a byte that is not part of a valid sequence, and a control
// character (below 0x20, and 0x7f), is written as \xNN. The result is valid
// UTF-8 without control characters, so a JSON serialiser writes valid JSON
// of it and a terminal shows it as it is; printable text is unchanged (so
// applying it twice changes nothing).
std::string PrintableText(std::string_view text);

}  // namespace bantay::models

#endif  // BANTAY_MODELS_TEXT_H_
