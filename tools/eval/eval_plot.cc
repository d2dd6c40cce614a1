#include "eval_plot.h"

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <map>
#include <sstream>
#include <vector>

namespace mikv::eval {

namespace {
const char* const kColors[] = {"#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02", "#a6761d", "#666666"};
}

Status WritePlot(const std::string& path, const nlohmann::json& report) {
  const std::vector<std::pair<std::string, std::string>> panels = {
      {"retrieval", "line retrieval (exact)"}, {"recall_top1", "recall top-1"}, {"top1_agreement", "prose top-1 vs full"}};
  const int pw = 300, ph = 240, left = 50, top = 40, gap = 40, legend_h = 22;
  // Series: configuration name -> points (cache %, score) per score.
  std::map<std::string, std::vector<const nlohmann::json*>> series;
  std::vector<std::string> order;
  double max_x = 0;
  if (!report.contains("rows")) return Status(MIKV_ERR_INVALID_ARGUMENT, "nothing to plot: no configuration rows");
  for (const auto& r : report["rows"]) {
    const std::string name = r["config"];
    if (!series.count(name)) order.push_back(name);
    series[name].push_back(&r);
    if (r["policy"] != "full" && r["policy"] != "plain") max_x = std::max(max_x, r["cache_fraction_of_fp16"].get<double>() * 100);
  }
  max_x = std::max(10.0, std::ceil(max_x / 10 + 0.5) * 10);
  std::ostringstream svg;
  const int width = left + (int)panels.size() * (pw + gap), height = top + ph + 50 + legend_h * (int)((order.size() + 2) / 3);
  svg << "<svg xmlns='http://www.w3.org/2000/svg' width='" << width << "' height='" << height
      << "' font-family='sans-serif' font-size='11'>\n<rect width='100%' height='100%' fill='white'/>\n";
  svg << "<text x='" << left << "' y='18' font-size='13'>" << report.value("model", std::string()) << " — score against KV cache size (% of FP16)</text>\n";
  for (size_t p = 0; p < panels.size(); ++p) {
    const int x0 = left + (int)p * (pw + gap), y0 = top;
    auto X = [&](double v) { return x0 + v / max_x * pw; };
    auto Y = [&](double v) { return y0 + ph - v * ph; };
    svg << "<rect x='" << x0 << "' y='" << y0 << "' width='" << pw << "' height='" << ph << "' fill='none' stroke='#999'/>\n";
    svg << "<text x='" << x0 << "' y='" << y0 - 6 << "' font-weight='bold'>" << panels[p].second << "</text>\n";
    for (int i = 0; i <= 4; ++i) {
      const double v = i / 4.0;
      svg << "<line x1='" << x0 << "' x2='" << x0 + pw << "' y1='" << Y(v) << "' y2='" << Y(v) << "' stroke='#eee'/>"
          << "<text x='" << x0 - 4 << "' y='" << Y(v) + 4 << "' text-anchor='end'>" << v << "</text>\n";
    }
    for (int i = 0; i <= 5; ++i) {
      const double v = max_x * i / 5;
      svg << "<text x='" << X(v) << "' y='" << y0 + ph + 14 << "' text-anchor='middle'>" << v << "%</text>\n";
    }
    for (size_t si = 0; si < order.size(); ++si) {
      const std::string color = kColors[si % 8];
      std::vector<std::pair<double, double>> pts;
      bool reference = false;
      for (const auto* r : series[order[si]]) {
        if (!r->contains(panels[p].first)) continue;
        reference = (*r)["policy"] == "full" || (*r)["policy"] == "plain";
        pts.push_back({(*r)["cache_fraction_of_fp16"].get<double>() * 100, (*r)[panels[p].first].get<double>()});
      }
      if (pts.empty()) continue;
      std::sort(pts.begin(), pts.end());
      if (reference) {
        svg << "<line x1='" << x0 << "' x2='" << x0 + pw << "' y1='" << Y(pts[0].second) << "' y2='" << Y(pts[0].second)
            << "' stroke='" << color << "' stroke-dasharray='5,4'/>\n";
        continue;
      }
      svg << "<polyline fill='none' stroke='" << color << "' stroke-width='2' points='";
      for (auto& pt : pts) svg << X(pt.first) << "," << Y(pt.second) << " ";
      svg << "'/>\n";
      for (auto& pt : pts) svg << "<circle cx='" << X(pt.first) << "' cy='" << Y(pt.second) << "' r='3' fill='" << color << "'/>\n";
    }
  }
  for (size_t si = 0; si < order.size(); ++si) {
    const int lx = left + (int)(si % 3) * 220, ly = top + ph + 36 + legend_h * (int)(si / 3);
    svg << "<rect x='" << lx << "' y='" << ly - 9 << "' width='14' height='10' fill='" << kColors[si % 8] << "'/>"
        << "<text x='" << lx + 20 << "' y='" << ly << "'>" << order[si] << "</text>\n";
  }
  svg << "</svg>\n";
  std::ofstream f(path);
  f << svg.str();
  if (!f) return Status(MIKV_ERR_IO, "cannot write '" + path + "'");
  return OkStatus();
}

}  // namespace mikv::eval
