#pragma once
// Reading a field of a JSON file that dprun wrote and a user may have edited. nlohmann's
// get<int>() of 1e30 converts a double out of int's range (undefined behaviour), get<size_t>()
// of -1 wraps and of 2.5 truncates, both silently, and its type errors ("type must be number,
// but is string") do not say which field: here each is an error that names the field.
#include <cstdint>
#include <limits>
#include <string>
#include <type_traits>

#include <nlohmann/json.hpp>

#include "runtime/core/error.h"

namespace dp {

// The value as an error message shows it: numbers and literals as written, else the type.
inline std::string json_shown(const nlohmann::json& v) {
  return v.is_primitive() && !v.is_string() ? v.dump() : v.type_name();
}

// `v`, named `name` in errors, as a T: a bool, a whole number in T's range (written as one, as
// dprun writes every count), a number, or a string.
template <typename T>
T json_as(const nlohmann::json& v, const std::string& name) {
  if constexpr (std::is_same_v<T, bool>) {
    DP_CHECK(v.is_boolean(), "{} must be true or false (got {})", name, json_shown(v));
  } else if constexpr (std::is_integral_v<T>) {
    using Limits = std::numeric_limits<T>;
    bool in_range = false;
    if (v.is_number_unsigned()) {
      in_range = v.get<uint64_t>() <= uint64_t(Limits::max());
    } else if (v.is_number_integer()) {
      const int64_t i = v.get<int64_t>();
      in_range = i >= 0 ? uint64_t(i) <= uint64_t(Limits::max())
                        : std::is_signed_v<T> && i >= int64_t(Limits::min());
    }
    DP_CHECK(in_range, "{} must be a whole number from {} to {} (got {})", name, Limits::min(),
             Limits::max(), json_shown(v));
  } else if constexpr (std::is_floating_point_v<T>) {
    DP_CHECK(v.is_number(), "{} must be a number (got {})", name, json_shown(v));
  } else {
    static_assert(std::is_same_v<T, std::string>, "json_as: bool, a number or std::string");
    DP_CHECK(v.is_string(), "{} must be a string (got {})", name, json_shown(v));
  }
  return v.get<T>();
}

// The name of field `key` of the object named `obj_name` ("" for the file's top level).
inline std::string json_name(const std::string& obj_name, const std::string& key) {
  return obj_name.empty() ? key : obj_name + "." + key;
}

// Field `key` of the object `obj` as it is (an object or an array to read on).
inline const nlohmann::json& json_member(const nlohmann::json& obj, const std::string& obj_name,
                                         const std::string& key) {
  DP_CHECK(obj.is_object(), "{} must be an object (got {})",
           obj_name.empty() ? "the file" : obj_name, json_shown(obj));
  const auto it = obj.find(key);
  DP_CHECK(it != obj.end(), "{} is missing", json_name(obj_name, key));
  return *it;
}

// Field `key` of the object `obj` as a T (json_as).
template <typename T>
T json_field(const nlohmann::json& obj, const std::string& obj_name, const std::string& key) {
  return json_as<T>(json_member(obj, obj_name, key), json_name(obj_name, key));
}

// `v`, named `name`, checked to be an array (nlohmann iterates a number as if it were one).
inline const nlohmann::json& json_array(const nlohmann::json& v, const std::string& name) {
  DP_CHECK(v.is_array(), "{} must be an array (got {})", name, json_shown(v));
  return v;
}

}  // namespace dp
