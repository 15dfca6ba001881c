// A C++ file for compilers to chew on (bench/README.md, Other programs):
// heavy standard headers and a deep template recursion, so that clang and
// g++ build a big AST and then generate code for it.
#include <regex>
#include <map>
#include <unordered_map>
#include <iostream>
#include <algorithm>
#include <functional>
#include <string>
#include <vector>
#include <memory>
#include <sstream>
#include <set>
#include <variant>
#include <optional>
template <int N> struct R { static int f(std::vector<int>& v) { std::sort(v.begin(), v.end(), [](int a, int b){return a % (N+1) < b % (N+1);}); return R<N-1>::f(v) + v[0]; } };
template <> struct R<0> { static int f(std::vector<int>& v) { return v.size(); } };
int main(int argc, char** argv) {
  std::map<std::string, std::vector<int>> m; std::unordered_map<int, std::string> u;
  std::regex re("([a-z]+)=([0-9]+)"); std::smatch sm; std::string s = argv[0];
  if (std::regex_search(s, sm, re)) std::cout << sm[1] << "\n";
  std::vector<int> v(100); int x = R<60>::f(v);
  std::variant<int, std::string, double> var = 3; std::optional<std::set<int>> o;
  std::ostringstream os; os << x << u.size() << m.size(); std::cout << os.str();
}
