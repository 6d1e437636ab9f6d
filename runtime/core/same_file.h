#pragma once
// Whether two paths name one file: what an output must never be of an input or of another
// output (prepare-text's --input/--output, training's --data/--config/--resume against
// --log-json/--trace/--dump-params, predict's --profile against --json).
#include <string>

namespace dp {

// True when `a` and `b` name the same file however they are spelled ("./x" and "x",
// "/tmp/../tmp/x", a symlink): the same inode when both exist, else the same path once
// made absolute with "." and ".." and the symlinks of its existing part resolved.
bool same_file(const std::string& a, const std::string& b);

}  // namespace dp
