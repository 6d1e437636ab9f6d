#pragma once
// Where the values of a --config file came from. Most value checks run long after the file
// was read (validate(), the model's options, opening --data) and name only the option
// ("--batch-size must be at least 1"); a user whose run.cfg set it must not have to guess
// that. One mechanism for every option: the launcher remembers option -> "FILE:LINE" for the
// file's values that took effect (the command line wins over the file, so an option given
// there has no file origin), and every error message that names an option from the file
// gets "(from FILE:LINE)" appended where it is reported.
#include <map>
#include <string>

namespace dp {

// Option name without dashes ("batch-size") -> "run.cfg:7".
using ConfigOrigins = std::map<std::string, std::string>;

// `message` with the file and line of every option it names ("--batch-size", ...) that came
// from the config file: "... (from run.cfg:7)", or with several such options
// "... (--min-lr from run.cfg:3, --lr from run.cfg:2)". Unchanged when it names none, and
// for the config reader's own messages ("--config FILE:LINE: ..."), which name the line.
std::string with_config_origin(const std::string& message, const ConfigOrigins& origins);

}  // namespace dp
