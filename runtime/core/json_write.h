#pragma once
// JSON that dprun writes (the --log-json records, checkpoint metadata, the profiles, the
// subcommands' --json files). Paths and arguments are bytes on Linux, and nlohmann's dump()
// throws on a string that is not UTF-8, which turned a data path or a checkpoint directory
// with such a name into a failed checkpoint record or a lost --json file after the work was
// done; here such bytes are written as U+FFFD instead.
#include <string>

#include <nlohmann/json.hpp>

namespace dp {

// `j` as text; `indent` < 0: one line, as JSON Lines needs.
std::string json_text(const nlohmann::json& j, int indent = -1);

// json_text(j, indent) and a newline, written with write_file_atomically (whole or not at all,
// errors naming `option` and `path`).
void write_json_atomically(const std::string& option, const std::string& path,
                           const nlohmann::json& j, int indent);

}  // namespace dp
